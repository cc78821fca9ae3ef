"""`ccyclegan export --format onnx`: the graph, its dynamic batch, parity with PyTorch through
real onnxruntime, and `translate` running on it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ccyclegan.cli import commands as cli
from ccyclegan.core.config import Config
from ccyclegan.core.data import EMOTIONS
from ccyclegan.core.generator_files import as_ensemble, load_generator, save_generator
from ccyclegan.core.models import Generator
from ccyclegan.core.synthetic import synthetic_faces
from ccyclegan.translate import export as export
from ccyclegan.translate.api import ExpressionTranslator
from ccyclegan.translate.backends import onnx_session

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("run")
    save_generator(path / "generator.safetensors", Generator(8, label_mode="planes"),
                   Config(gen_channels=8, label_mode="planes"), {"step": 3})
    return path


@pytest.fixture(scope="module")
def model_onnx(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert cli.main(["export", "--checkpoint", str(run_dir), "--format", "onnx",
                     "-o", str(out)]) == 0
    return out


def _onnx_runs_the_shipped_edit(onx, x, c, want) -> dict[str, str]:
    """onnxruntime's output for (x, c) is want within 1e-3; the graph's metadata back."""
    session = ort.InferenceSession(str(onx), providers=["CPUExecutionProvider"])
    got = session.run(["translated"], {"face": x.numpy(), "condition": c.numpy()})[0]
    assert np.abs(got - want.numpy()).max() < 1e-3
    return {p.key: p.value for p in onnx.load(str(onx)).metadata_props}


def _translator_runs_the_edit(model, G, x, emotion) -> np.ndarray:
    """The translator's edit (grey levels) of faces x towards emotion is G's own, within 0.05;
    the edit back."""
    faces = ((x[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    _, d = ExpressionTranslator.load(model).edit(faces, [emotion])
    with torch.no_grad():
        xf = torch.from_numpy(faces).float()[:, None] / 127.5 - 1
        c = torch.eye(7)[[EMOTIONS.index(emotion)] * len(faces)]
        want = (G(xf, c) - xf)[:, 0] * 127.5
    np.testing.assert_allclose(d[:, 0], want.numpy(), atol=0.05)
    return d


def test_graph_inputs_outputs_and_metadata(model_onnx):
    model = onnx.load(str(model_onnx))
    onnx.checker.check_model(model)

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    assert [(i.name, dims(i)) for i in model.graph.input] == [
        ("face", ["batch", 1, 48, 48]), ("condition", ["batch", 7])]
    assert [(o.name, dims(o)) for o in model.graph.output] == [
        ("translated", ["batch", 1, 48, 48]), ("mask", ["batch", 1, 48, 48]),
        ("flow", ["batch", 2, 48, 48])]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["ccyclegan.emotions"]) == list(EMOTIONS)
    assert json.loads(meta["ccyclegan.config"])["label_mode"] == "planes"


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_pytorch(model_onnx, run_dir, batch):
    G, _, _ = load_generator(run_dir)
    session = ort.InferenceSession(str(model_onnx), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(batch)
    x = rng.uniform(-1, 1, (batch, 1, 48, 48)).astype(np.float32)
    c = rng.dirichlet(np.ones(7), batch).astype(np.float32)  # blends, not just one-hots
    c[0] = np.eye(7, dtype=np.float32)[3]
    got, mask, flow = session.run(None, {"face": x, "condition": c})
    with torch.no_grad():
        want = G(torch.from_numpy(x), torch.from_numpy(c)).numpy()
    assert got.shape == want.shape == (batch, 1, 48, 48)
    assert np.abs(got - want).max() < 1e-3
    assert np.abs(want).mean() > 0.01  # not a trivially constant output
    # a direct output paints the whole face and moves nothing: mask 1 (all detail kept), no field
    assert (mask == 1).all() and (flow == 0).all() and flow.shape == (batch, 2, 48, 48)


def test_a_warp_generator_exports_its_mask_and_field(tmp_path):
    """ONNX gives the photo path the same parts as PyTorch: onnxruntime's translated face,
    mask and displacement field match the generator's (GridSample, opset 17)."""
    torch.manual_seed(2)
    cfg = Config(gen_channels=8, output="warp", label_mode="norm")
    G = Generator(8, output="warp", label_mode="norm").eval()
    with torch.no_grad():
        G.flow.weight.normal_(0, 0.3)  # a real field, not the zero of initialisation
    save_generator(tmp_path / "generator.safetensors", G, cfg, {})
    out = tmp_path / "warp.onnx"
    assert cli.main(["export", "--checkpoint", str(tmp_path), "--format", "onnx",
                     "-o", str(out)]) == 0
    x = torch.rand(3, 1, 48, 48) * 2 - 1
    c = torch.eye(7)[[1, 3, 5]]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"face": x.numpy(), "condition": c.numpy()})
    with torch.no_grad():
        want = G.decode_parts(G.encode(x), c)
    assert want[2].abs().max() > 0.1
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and np.abs(g - w.numpy()).max() < 1e-3
    t_torch, t_onnx = ExpressionTranslator.load(tmp_path), ExpressionTranslator.load(out)
    faces = synthetic_faces(1, seed=4).images[:3, 0].numpy()
    e1 = t_torch.edit_parts(faces, ["sad"])[2]
    e2 = t_onnx.edit_parts(faces, ["sad"])[2]
    for a, b in zip(e1, e2, strict=True):
        assert np.abs(a[0].flow - b[0].flow).max() < 1e-3
        assert np.abs(a[0].paint - b[0].paint).max() < 0.2


def test_translator_on_onnxruntime_matches_torch(model_onnx, run_dir):
    faces = synthetic_faces(1, seed=4).images[:, 0].numpy()
    t_torch = ExpressionTranslator.load(run_dir)
    t_onnx = ExpressionTranslator.load(model_onnx)
    assert t_onnx.backend == "onnxruntime" and t_torch.backend == "torch"
    for a in (1.0, 0.4):
        _, d1 = t_torch.edit(faces, ["happy", "fear"], a)
        _, d2 = t_onnx.edit(faces, ["happy", "fear"], a)
        assert np.abs(d1 - d2).max() < 1e-3 * 127.5 * 2  # 1e-3 of the [-1, 1] range, twice
        assert np.abs(d1).mean() > 0.5


def test_the_onnx_session_frees_the_cores_when_a_run_returns(model_onnx):
    """Its threads may busy-wait between a run's kernels, not after it: a photo's face detection
    runs between generator runs and needs the cores."""
    session = onnx_session(model_onnx, 2, None)
    feed = {"face": np.zeros((1, 1, 48, 48), np.float32),
            "condition": np.eye(7, dtype=np.float32)[:1]}
    for _ in range(20):
        session.run(None, feed)
    cpu = time.process_time()
    time.sleep(0.1)
    assert time.process_time() - cpu < 0.02  # a thread still spinning takes ~0.09 s of it


def test_cli_translate_with_onnx(model_onnx, run_dir, tmp_path, capsys):
    face = tmp_path / "face.png"
    Image.fromarray(synthetic_faces(1, seed=6).images[2, 0].numpy()).save(face)
    for flags, name in ((["--onnx", model_onnx], "a.png"),
                        (["--checkpoint", model_onnx], "b.png"),
                        (["--backend", "onnxruntime", "--checkpoint", run_dir], "c.png"),
                        (["--checkpoint", run_dir], "d.png")):
        rc = cli.main(["translate", str(face), "--to", "sad", "--no-detect", "-q",
                       "-o", str(tmp_path / name), *map(str, flags)])
        assert rc == 0, capsys.readouterr().err
    a, b, c, d = (np.asarray(Image.open(tmp_path / f"{n}.png"), dtype=int) for n in "abcd")
    assert np.array_equal(a, b)  # the exported file and the in-memory export run alike
    assert np.abs(a - c).max() <= 1
    assert np.abs(a - d).max() <= 1  # onnxruntime vs torch: within one grey level
    assert not np.array_equal(a, np.asarray(Image.open(face)))


@pytest.mark.parametrize("argv, what", [
    (["translate", "X", "--to", "sad", "--onnx", "BAD", "--checkpoint", "RUN"], "not both"),
    (["translate", "X", "--to", "sad", "--backend", "torch", "--onnx", "BAD"], "onnxruntime"),
    (["translate", "X", "--to", "sad", "--onnx", "missing.onnx"], "not found"),
    (["translate", "X", "--to", "sad", "--onnx", "BAD"], "not a valid ONNX model"),
    (["export", "--checkpoint", "missing_run", "-o", "m.onnx"], "not found"),
    (["export", "--checkpoint", "missing_run", "--format", "safetensors", "-o", "m.safetensors"],
     "not found"),
    (["export", "--checkpoint", "RUN", "-o", "m.txt"], "should end in .onnx"),
])
def test_cli_errors(argv, what, tmp_path, run_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "X").write_bytes(b"")
    (tmp_path / "BAD").write_bytes(b"not onnx")
    (tmp_path / "BAD.onnx").write_bytes(b"not onnx")
    argv = [str(run_dir) if a == "RUN" else "BAD.onnx" if a == "BAD" else a for a in argv]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ccyclegan {argv[0]}: error: ") and what in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("fmt, out", [("onnx", "m.onnx"), ("safetensors", "m.safetensors")])
def test_export_without_a_bundled_model_names_the_fix(fmt, out, tmp_path, capsys, monkeypatch):
    """No --checkpoint and no bundled file: both formats say how to get a model, write nothing."""
    monkeypatch.setattr(export, "bundled_model_path", lambda: None)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["export", "--format", fmt, "-o", out]) == 2
    err = capsys.readouterr().err
    assert "no bundled model" in err and "--checkpoint" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("blur", [1.5, 0.0])
def test_an_onnx_model_trained_on_blurred_faces_is_refused(blur, run_dir, tmp_path, capsys):
    """Models exported while models blurred their inputs carry input_blur in their metadata:
    > 0 was trained on FER2013 version 1's blurred faces and is refused in one line; 0 (a
    model trained on sharp faces) runs."""
    from ccyclegan.core.checkpoint import CheckpointError
    from ccyclegan.translate.export import onnx_bytes

    G, cfg, _ = load_generator(run_dir)
    model = tmp_path / "m.onnx"
    model.write_bytes(onnx_bytes(G, {**cfg.to_dict(), "input_blur": blur}))
    face = tmp_path / "face.png"
    Image.fromarray(synthetic_faces(1, seed=5).images[0, 0].numpy()).save(face)
    argv = ["translate", str(face), "--to", "sad", "--onnx", str(model), "--no-detect", "-q"]
    if not blur:
        assert ExpressionTranslator.load(model).backend == "onnxruntime"
        assert cli.main(argv) == 0
        return
    with pytest.raises(CheckpointError, match=r"m\.onnx \(config\): input_blur 1\.5: trained "
                                              r"on blurred faces \(FER2013 version 1\)"):
        ExpressionTranslator.load(model)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must be retrained" in err[0]
    assert not (tmp_path / "face_sad.png").exists()


def test_export_safetensors_release_file_is_fp16_and_translates_alike(run_dir, tmp_path):
    from ccyclegan.core.checkpoint import load_tensors

    out = tmp_path / "release.safetensors"
    assert cli.main(["export", "--checkpoint", str(run_dir), "--format", "safetensors",
                     "-o", str(out)]) == 0
    tensors, meta = load_tensors(out)
    assert meta["kind"] == "generator" and meta["progress"]["step"] == 3
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    assert out.stat().st_size < 0.6 * (run_dir / "generator.safetensors").stat().st_size
    faces = synthetic_faces(1, seed=8).images[:, 0].numpy()
    _, d_full = ExpressionTranslator.load(run_dir).edit(faces, ["sad"])
    _, d_half = ExpressionTranslator.load(out).edit(faces, ["sad"])
    assert np.abs(d_full - d_half).max() < 2.0


def test_export_strength_ships_a_weaker_edit_to_every_path(run_dir, tmp_path, capsys):
    """--strength S: the exported G outputs x + S (G(x|t) - x), in the safetensors file and in
    the ONNX graph alike, so translate, evaluate and onnxruntime all run the shipped edit."""
    from ccyclegan.core.checkpoint import CheckpointError, load_tensors, save_tensors

    sft, onx = tmp_path / "weak.safetensors", tmp_path / "weak.onnx"
    for fmt, out in (("safetensors", sft), ("onnx", onx)):
        assert cli.main(["export", "--checkpoint", str(run_dir), "--format", fmt, "--fp32",
                         "--strength", "0.6", "-o", str(out)] if fmt == "safetensors" else
                        ["export", "--checkpoint", str(run_dir), "--format", fmt,
                         "--strength", "0.6", "-o", str(out)]) == 0
    assert "strength 0.6" in capsys.readouterr().out
    full = as_ensemble(load_generator(run_dir)[0])
    weak = as_ensemble(load_generator(sft)[0])
    assert full.strength == 1.0 and weak.strength == 0.6
    x = synthetic_faces(1, seed=2).images[:3].float() / 127.5 - 1
    c = torch.eye(7)[[1, 3, 5]]
    with torch.no_grad():
        want = x + 0.6 * (full(x, c) - x)
        torch.testing.assert_close(weak(x, c), want, atol=1e-5, rtol=0)
    meta = _onnx_runs_the_shipped_edit(onx, x, c, want)
    assert json.loads(meta["ccyclegan.strength"]) == 0.6
    # a bad strength is refused on the command line and in a file's metadata
    assert cli.main(["export", "--checkpoint", str(run_dir), "--format", "safetensors",
                     "--strength", "2.5", "-o", str(tmp_path / "bad.safetensors")]) != 0
    assert "--strength" in capsys.readouterr().err
    tensors, m = load_tensors(sft)
    save_tensors(tmp_path / "odd.safetensors", tensors, {**m, "strength": 0})
    with pytest.raises(CheckpointError, match="strength"):
        load_generator(tmp_path / "odd.safetensors")


def test_export_strength_per_target_emotion(run_dir, tmp_path, capsys):
    """--strength 'disgust=0.5,sad=0.8': each target gets its own blend, in the safetensors
    file and in the ONNX graph alike; the others keep 1."""
    from ccyclegan.core.checkpoint import CheckpointError, load_tensors, save_tensors

    spec = "disgust=0.5, Sad=0.8"
    sft, onx = tmp_path / "per.safetensors", tmp_path / "per.onnx"
    assert cli.main(["export", "--checkpoint", str(run_dir), "--format", "safetensors",
                     "--fp32", "--strength", spec, "-o", str(sft)]) == 0
    assert "disgust 0.5" in capsys.readouterr().out
    assert cli.main(["export", "--checkpoint", str(run_dir), "--strength", spec,
                     "-o", str(onx)]) == 0
    full = as_ensemble(load_generator(run_dir)[0])
    per = as_ensemble(load_generator(sft)[0])
    assert per.strength == (1.0, 0.5, 1.0, 1.0, 0.8, 1.0, 1.0)
    x = synthetic_faces(1, seed=2).images[:3].float() / 127.5 - 1
    c = torch.eye(7)[[1, 3, 4]]  # disgust, happy, sad
    with torch.no_grad():
        want = x + torch.tensor([0.5, 1.0, 0.8]).view(3, 1, 1, 1) * (full(x, c) - x)
        torch.testing.assert_close(per(x, c), want, atol=1e-5, rtol=0)
    meta = _onnx_runs_the_shipped_edit(onx, x, c, want)
    assert json.loads(meta["ccyclegan.strength"]) == [1.0, 0.5, 1.0, 1.0, 0.8, 1.0, 1.0]
    # bad specs name the problem
    for bad, words in (("joy=0.5", "unknown emotion 'joy'"), ("sad=x", "not a number"),
                       ("sad=0", "sad: must be a number in (0, 2]"), ("high", "expected")):
        assert cli.main(["export", "--checkpoint", str(run_dir), "--strength", bad,
                         "-o", str(tmp_path / "bad.onnx")]) != 0
        assert words in capsys.readouterr().err
    assert not (tmp_path / "bad.onnx").exists()
    tensors, m = load_tensors(sft)
    save_tensors(tmp_path / "odd.safetensors", tensors, {**m, "strength": [1.0] * 6})
    with pytest.raises(CheckpointError, match="needs 7 numbers"):
        load_generator(tmp_path / "odd.safetensors")


def test_export_flip_average_ships_the_mirror_mean_to_every_path(run_dir, tmp_path, capsys):
    """--flip-average: the file's G returns the mean of its edit of the face and, mirrored
    back, of the mirror image (then the strength), in the safetensors file, the ONNX graph and
    the translator's encode-once / decode-per-target path alike; --no-flip-average turns it off."""
    from ccyclegan.core.checkpoint import CheckpointError, load_tensors, save_tensors

    sft, onx = tmp_path / "flip.safetensors", tmp_path / "flip.onnx"
    assert cli.main(["export", "--checkpoint", str(run_dir), "--format", "safetensors",
                     "--fp32", "--flip-average", "--strength", "0.8", "-o", str(sft)]) == 0
    assert "flip average True" in capsys.readouterr().out
    assert cli.main(["export", "--checkpoint", str(sft), "-o", str(onx)]) == 0
    full = as_ensemble(load_generator(run_dir)[0])
    flip = as_ensemble(load_generator(sft)[0])
    assert not full.flip_average and flip.flip_average and flip.strength == 0.8
    x = synthetic_faces(1, seed=3).images[:3].float() / 127.5 - 1
    c = torch.eye(7)[[0, 3, 5]]
    with torch.no_grad():
        mean = (full(x, c) + full(x.flip(-1), c).flip(-1)) / 2
        want = x + 0.8 * (mean - x)
        torch.testing.assert_close(flip(x, c), want, atol=1e-5, rtol=0)
        assert (full(x, c) - mean).abs().max() > 1e-3  # the mirror pass changes the output
        feats = flip.encode(x)  # rows picked from the encoding decode as their own faces
        torch.testing.assert_close(flip.decode([f[[2, 0]] for f in feats], c[[2, 0]]),
                                   want[[2, 0]], atol=1e-5, rtol=0)
    meta = _onnx_runs_the_shipped_edit(onx, x, c, want)
    assert json.loads(meta["ccyclegan.flip_average"]) is True
    faces = ((x[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    _, d_torch = ExpressionTranslator.load(sft).edit(faces, ["happy", "sad"])
    _, d_onnx = ExpressionTranslator.load(onx).edit(faces, ["happy", "sad"])
    with torch.no_grad():
        xf = torch.from_numpy(faces).float()[:, None] / 127.5 - 1
        want_happy = (flip(xf, torch.eye(7)[[3] * 3]) - xf)[:, 0] * 127.5
    np.testing.assert_allclose(d_torch[:, 0], want_happy.numpy(), atol=0.05)
    assert np.abs(d_torch - d_onnx).max() < 0.2
    off = tmp_path / "off.safetensors"
    assert cli.main(["export", "--checkpoint", str(sft), "--format", "safetensors",
                     "--no-flip-average", "-o", str(off)]) == 0
    assert not as_ensemble(load_generator(off)[0]).flip_average
    tensors, m = load_tensors(sft)
    save_tensors(tmp_path / "odd.safetensors", tensors, {**m, "flip_average": "yes"})
    with pytest.raises(CheckpointError, match="flip_average"):
        load_generator(tmp_path / "odd.safetensors")


def test_export_condition_scale_decodes_a_scaled_label_on_every_path(run_dir, tmp_path, capsys):
    """--condition-scale A: the file's G decodes A x the condition (then the strength), in the
    safetensors file, the ONNX graph and the translator alike; bad values are refused."""
    from ccyclegan.core.checkpoint import CheckpointError, load_tensors, save_tensors

    sft, onx = tmp_path / "cs.safetensors", tmp_path / "cs.onnx"
    assert cli.main(["export", "--checkpoint", str(run_dir), "--format", "safetensors",
                     "--fp32", "--condition-scale", "2", "--strength", "0.8",
                     "-o", str(sft)]) == 0
    assert "condition scale 2" in capsys.readouterr().out
    assert cli.main(["export", "--checkpoint", str(sft), "-o", str(onx)]) == 0
    full = as_ensemble(load_generator(run_dir)[0])
    scaled = as_ensemble(load_generator(sft)[0])
    assert full.condition_scale == 1.0 and scaled.condition_scale == 2.0
    x = synthetic_faces(1, seed=4).images[:3].float() / 127.5 - 1
    c = torch.eye(7)[[1, 3, 6]]
    with torch.no_grad():
        want = x + 0.8 * (full(x, 2 * c) - x)
        torch.testing.assert_close(scaled(x, c), want, atol=1e-5, rtol=0)
        assert (full(x, c) - full(x, 2 * c)).abs().max() > 1e-3  # the scale changes the edit
    meta = _onnx_runs_the_shipped_edit(onx, x, c, want)
    assert json.loads(meta["ccyclegan.condition_scale"]) == 2.0
    _translator_runs_the_edit(sft, scaled, x, "sad")
    assert cli.main(["export", "--checkpoint", str(run_dir), "--format", "safetensors",
                     "--condition-scale", "0", "-o", str(tmp_path / "bad.safetensors")]) != 0
    assert "--condition-scale" in capsys.readouterr().err
    assert not (tmp_path / "bad.safetensors").exists()
    tensors, m = load_tensors(sft)
    save_tensors(tmp_path / "odd.safetensors", tensors, {**m, "condition_scale": "big"})
    with pytest.raises(CheckpointError, match="condition_scale"):
        load_generator(tmp_path / "odd.safetensors")


def test_export_condition_scale_per_emotion_scales_each_target_by_its_own(run_dir, tmp_path,
                                                                          capsys):
    """--condition-scale 'disgust=1.75,happy=1.5': each component of the condition is scaled by
    its own emotion's number (others 1), in the file and the ONNX graph; a blend of two targets
    decodes the blend of the scaled one-hots; unknown emotions and bad values are refused."""
    from ccyclegan.core.checkpoint import CheckpointError, load_tensors, save_tensors

    sft, onx = tmp_path / "per.safetensors", tmp_path / "per.onnx"
    assert cli.main(["export", "--checkpoint", str(run_dir), "--format", "safetensors",
                     "--fp32", "--condition-scale", "disgust=1.75, happy=1.5",
                     "-o", str(sft)]) == 0
    assert "condition scale angry 1, disgust 1.75, fear 1, happy 1.5" in capsys.readouterr().out
    assert cli.main(["export", "--checkpoint", str(sft), "-o", str(onx)]) == 0
    full = as_ensemble(load_generator(run_dir)[0])
    per = as_ensemble(load_generator(sft)[0])
    scale = torch.tensor([1, 1.75, 1, 1.5, 1, 1, 1])
    assert per.condition_scale == tuple(scale.tolist())
    x = synthetic_faces(1, seed=5).images[:4].float() / 127.5 - 1
    c = torch.eye(7)[[1, 3, 6, 0]]
    c[3] = 0.5 * (torch.eye(7)[1] + torch.eye(7)[6])  # a blend of disgust and neutral
    with torch.no_grad():
        want = full(x, c * scale)
        torch.testing.assert_close(per(x, c), want, atol=1e-5, rtol=0)
        assert (per(x[:1], c[:1]) - full(x[:1], c[:1])).abs().max() > 1e-3  # disgust scaled
        torch.testing.assert_close(per(x[2:3], c[2:3]), full(x[2:3], c[2:3]), atol=1e-6,
                                   rtol=0)  # neutral is not
    meta = _onnx_runs_the_shipped_edit(onx, x, c, want)
    assert json.loads(meta["ccyclegan.condition_scale"]) == scale.tolist()
    for bad, words in (("joy=2", "unknown emotion 'joy'"), ("sad=5", "sad: must be"),
                       ("sad=x", "not a number")):
        assert cli.main(["export", "--checkpoint", str(run_dir), "--format", "safetensors",
                         "--condition-scale", bad, "-o", str(tmp_path / "bad.safetensors")]) != 0
        err = capsys.readouterr().err
        assert "--condition-scale" in err and words in err, err
        assert not (tmp_path / "bad.safetensors").exists()
    tensors, m = load_tensors(sft)
    save_tensors(tmp_path / "odd.safetensors", tensors, {**m, "condition_scale": [1.0, 2.0]})
    with pytest.raises(CheckpointError, match="condition_scale.*7 numbers"):
        load_generator(tmp_path / "odd.safetensors")


def test_export_ensemble_with_averages_the_members_on_every_path(run_dir, tmp_path, capsys):
    """--ensemble-with: one file whose G outputs the mean of its members' outputs (each
    mirror-averaged, then the file's strength), in the safetensors file, the ONNX graph and the
    translator; members of another architecture and bad member counts are refused."""
    from ccyclegan.core.checkpoint import CheckpointError, load_tensors, save_tensors

    torch.manual_seed(2)
    other = tmp_path / "other.safetensors"
    save_generator(other, Generator(8, label_mode="planes"),
                   Config(gen_channels=8, label_mode="planes"), {"step": 5})
    sft, onx = tmp_path / "pair.safetensors", tmp_path / "pair.onnx"
    assert cli.main(["export", "--checkpoint", str(run_dir), "--format", "safetensors",
                     "--fp32", "--flip-average", "--strength", "0.8", "--ensemble-with",
                     str(other), "-o", str(sft)]) == 0
    assert "2 generator(s)" in capsys.readouterr().out
    assert cli.main(["export", "--checkpoint", str(sft), "-o", str(onx)]) == 0
    a, b = load_generator(run_dir)[0], load_generator(other)[0]
    pair = as_ensemble(load_generator(sft)[0])
    assert len(pair.members) == 2 and pair.flip_average and pair.strength == 0.8
    x = synthetic_faces(1, seed=4).images[:3].float() / 127.5 - 1
    c = torch.eye(7)[[1, 3, 6]]
    with torch.no_grad():
        mean = sum(G(v, c) if not f else G(v.flip(-1), c).flip(-1)
                   for G in (a, b) for v, f in ((x, 0), (x, 1))) / 4
        want = x + 0.8 * (mean - x)
        torch.testing.assert_close(pair(x, c), want, atol=1e-5, rtol=0)
        assert (a(x, c) - b(x, c)).abs().max() > 1e-3  # the members differ
        feats = pair.encode(x)  # rows picked from the encoding decode as their own faces
        torch.testing.assert_close(pair.decode([f[[2, 0]] for f in feats], c[[2, 0]]),
                                   want[[2, 0]], atol=1e-5, rtol=0)
    meta = _onnx_runs_the_shipped_edit(onx, x, c, want)
    assert json.loads(meta["ccyclegan.members"]) == 2
    _translator_runs_the_edit(sft, pair, x, "surprise")
    # a third member joins (the pair's own partner comes along), and re-export keeps them all
    trio = tmp_path / "trio.safetensors"
    assert cli.main(["export", "--checkpoint", str(run_dir), "--format", "safetensors",
                     "--ensemble-with", f"{sft},{other}", "-o", str(trio)]) == 0
    assert len(load_generator(trio)[0].members) == 4
    wide = tmp_path / "wide.safetensors"
    save_generator(wide, Generator(16, label_mode="planes"),
                   Config(gen_channels=16, label_mode="planes"), {})
    assert cli.main(["export", "--checkpoint", str(run_dir), "--format", "safetensors",
                     "--ensemble-with", str(wide), "-o", str(tmp_path / "bad.safetensors")]) != 0
    err = capsys.readouterr().err
    assert "wide.safetensors" in err and "gen_channels 16" in err
    assert not (tmp_path / "bad.safetensors").exists()
    tensors, m = load_tensors(sft)
    for bad in (1, 3, "2"):  # the count must match the tensors and be a whole number
        save_tensors(tmp_path / "odd.safetensors", tensors, {**m, "members": bad})
        with pytest.raises(CheckpointError, match="odd.safetensors"):
            load_generator(tmp_path / "odd.safetensors")
