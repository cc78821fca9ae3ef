"""Safe loading: weights come from safetensors only (checksummed), configs in metadata are
validated field by field, and no loader runs a pickle. Every bad file -- truncated, corrupted,
wrong shape, NaN, bad or huge config, a malicious pickle -- is a clear CheckpointError from
each loader: load_generator, ExpressionTranslator.load, the training resume and
load_classifier. The one pickle reader, the FID Inception .pth loader, refuses code."""

from __future__ import annotations

import ast
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from ccyclegan.classifier.nets import load_classifier
from ccyclegan.cli.commands import main
from ccyclegan.core.checkpoint import CheckpointError, load_tensors, save_tensors
from ccyclegan.core.config import Config
from ccyclegan.core.generator_files import load_generator
from ccyclegan.evaluate.inception import InceptionWeightsError, read_state_dict
from ccyclegan.train.loop import train
from ccyclegan.translate.api import ExpressionTranslator


class Evil:
    """Unpickling this runs a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def evil_pth(path, marker):
    torch.save({"fc.weight": torch.zeros(2), "payload": Evil(marker)}, path)
    return path


@pytest.fixture(scope="module")
def good(tiny_artifacts):
    return tiny_artifacts


def _resume(path, good):
    """Resume a copy of the good run whose checkpoint is replaced by the file at path."""
    run = path.parent / "resume_run"
    shutil.copytree(good["checkpoint"].parent, run, dirs_exist_ok=True)
    shutil.copy(path, run / "checkpoint.safetensors")
    cfg = Config.from_dict({**good["cfg"].to_dict(), "out": str(run), "max_steps": 3})
    train(cfg, resume=True, overrides={"max_steps": 3}, progress_bar=False)


LOADERS = {  # name: (source file, load, the config field that sets the model's size)
    "load_generator": ("generator", lambda p, g: load_generator(p), "gen_channels"),
    "translator": ("generator", lambda p, g: ExpressionTranslator.load(p), "gen_channels"),
    "resume": ("checkpoint", _resume, "disc_channels"),
    "load_classifier": ("classifier", lambda p, g: load_classifier(p), "width"),
}


def _rewrite(src, dst, change):
    tensors, meta = load_tensors(src)
    change(tensors, meta)
    save_tensors(dst, tensors, meta)  # a valid file (fresh checksum) with the change


def _flip_data_byte(src, dst):
    raw = bytearray(src.read_bytes())
    raw[-5] ^= 0x10  # inside the last tensor's data: only the checksum can tell
    dst.write_bytes(bytes(raw))


def _garble_header(src, dst):
    raw = bytearray(src.read_bytes())
    raw[9:30] = b"\xff" * 21
    dst.write_bytes(bytes(raw))


def _set_config(field, value):
    def change(tensors, meta):
        meta["config"][field] = value
    return change


def _nan_weight(tensors, meta):
    k = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1
             and not k.startswith(("opt_", "rng")))
    tensors[k] = tensors[k].clone()
    tensors[k].view(-1)[0] = float("nan")


def _raw_meta(text):
    def make(src, dst):
        tensors, _ = load_tensors(src)
        dst.write_bytes(st_save(tensors, metadata={"ccyclegan": text}))
    return make


FAULTS = {  # name: (make the bad file from the good one, what the error says)
    "truncated": (lambda s, d: d.write_bytes(s.read_bytes()[:len(s.read_bytes()) // 2]),
                  "truncated or corrupted"),
    "empty": (lambda s, d: d.write_bytes(b""), "truncated or corrupted"),
    "corrupted data": (_flip_data_byte, "checksum mismatch"),
    "corrupted header": (_garble_header, "truncated or corrupted"),
    "wrong shape": ("size", r"do not fit the model: .*shape mismatch"),
    "huge model claimed": ("huge", "do not fit the model"),
    "NaN weights": (lambda s, d: _rewrite(s, d, _nan_weight), "not finite"),
    "bad config value": (lambda s, d: _rewrite(s, d, _set_config("seed", "zero")), "'seed'"),
    "unknown config field": (lambda s, d: _rewrite(s, d, _set_config("evil", 1)), "evil"),
    "metadata not an object": (_raw_meta("[1, 2, 3]"), "must be a JSON object"),
    "metadata not JSON": (_raw_meta("{'kind': "), "truncated or corrupted"),
    "no config": (lambda s, d: _rewrite(s, d, lambda t, m: m.pop("config")), "no config"),
    "trained on blurred faces": (lambda s, d: _rewrite(s, d, _set_config("input_blur", 3.674)),
                                 r"input_blur 3\.674: trained on blurred faces \(FER2013 "
                                 r"version 1\).* must be retrained"),
}


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_bad_files_are_clear_errors(tmp_path, good, loader, fault):
    source, load, size_field = LOADERS[loader]
    make, says = FAULTS[fault]
    src, bad = good[source], tmp_path / "bad.safetensors"
    if make == "size":
        make = lambda s, d: _rewrite(s, d, _set_config(size_field, 16))  # noqa: E731
    elif make == "huge":
        make = lambda s, d: _rewrite(s, d, _set_config(size_field, 10**7))  # noqa: E731
    make(src, bad)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=says) as e:
        load(bad, good)
    named = "checkpoint.safetensors" if loader == "resume" else "bad.safetensors"
    assert named in str(e.value) and "\n" not in str(e.value)
    assert time.perf_counter() - t0 < 20  # a claimed 10^7-channel model is never allocated


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("blur", [0.0, -1.0])
def test_a_file_without_an_input_blur_still_loads(tmp_path, good, loader, blur):
    """Files written while models blurred their inputs carry input_blur: 0 when trained on
    sharp faces (FER2013 version 2), -1 its old default. Neither asked for a blur."""
    source, load, _ = LOADERS[loader]
    ok = tmp_path / "ok.safetensors"
    _rewrite(good[source], ok, _set_config("input_blur", blur))
    load(ok, good)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_pickles_are_never_run(tmp_path, good, loader):
    marker = tmp_path / "pwned"
    for name in ("evil.safetensors", "evil.pth"):  # by any name
        with pytest.raises(CheckpointError, match="not a valid safetensors"):
            LOADERS[loader][1](evil_pth(tmp_path / name, marker), good)
    assert not marker.exists()


def test_wrong_kind_is_named(good):
    with pytest.raises(CheckpointError, match="not a generator or training checkpoint"):
        load_generator(good["classifier"])
    with pytest.raises(CheckpointError, match="not a ccyclegan classifier"):
        load_classifier(good["generator"])


def test_inception_pth_uses_the_restricted_unpickler(tmp_path):
    """The documented exception: FID Inception weights may be a .pth (pickle), read with
    torch.load(weights_only=True). A pickle that would call os.system is refused, not run."""
    marker = tmp_path / "pwned"
    path = evil_pth(tmp_path / "pt_inception-2015-12-05-6726825d.pth", marker)
    with pytest.raises(InceptionWeightsError, match=r"refused: .*posix\.system.*weights_only"):
        read_state_dict(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # proof that the payload is live: it runs here
    assert marker.exists()
    marker.unlink()
    sd = {"w": torch.ones(3)}  # and tensors-only .pth files still load
    torch.save(sd, tmp_path / "ok.pth")
    assert torch.equal(read_state_dict(tmp_path / "ok.pth")["w"], sd["w"])


def test_no_pickle_readers_in_the_package():
    """The audit as a test: the package calls torch.load once (the Inception .pth, with
    weights_only=True) and nothing else that unpickles (pickle, np.load, torch.jit.load, ...)."""
    import ccyclegan

    root = Path(ccyclegan.__file__).parent
    loads, imports = [], []
    for py in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                imports += [(py.name, n) for n in names if n.split(".")[0] in
                            ("pickle", "dill", "joblib", "marshal", "shelve", "cloudpickle")]
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("load", "loads", "Unpickler")):
                owner = ast.unparse(node.func.value)
                if owner in ("torch", "np", "numpy", "torch.jit", "jit", "pickle"):
                    kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    loads.append((py.name, owner, kw.get("weights_only"),
                                  kw.get("allow_pickle")))
    assert loads == [("inception.py", "torch", "True", None)], loads
    assert imports == [("inception.py", "pickle")], imports  # for pickle.UnpicklingError only


def test_config_files_are_validated(tmp_path, capsys):
    p = tmp_path / "list.json"
    p.write_text(json.dumps([1, 2]))
    rc = main(["sweep", "--data", "x.csv", "--out", str(tmp_path / "s"), "--classifier", "c",
               "--config", str(p)])
    assert rc == 2 and "expected a JSON object" in capsys.readouterr().err
    p.write_text('{"lr": NaN}')
    rc = main(["train", "--config", str(p), "--data", "x.csv", "--out", str(tmp_path / "t")])
    assert rc == 2 and "'lr' must be a finite number" in capsys.readouterr().err
