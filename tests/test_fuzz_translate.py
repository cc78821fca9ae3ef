"""Property-based fuzzing of the photo pipeline and of checkpoint metadata: random bytes as
images, extreme sizes and modes, header-only decompression bombs, odd file names, through
ExpressionTranslator.translate and `ccyclegan translate` (with and without detection), and
random or garbled JSON in a checkpoint's metadata through every loader. Every case ends in a
result or a typed error (TranslateError, CheckpointError, ConfigError); none crashes or hangs
(a hypothesis deadline per case, and an alarm that turns a hang into a failure)."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import struct
import zlib
from datetime import timedelta

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save as st_save

from ccyclegan.classifier.nets import load_classifier
from ccyclegan.cli.commands import main
from ccyclegan.core.checkpoint import DIGEST_KEY, CheckpointError, load_tensors
from ccyclegan.core.config import ConfigError
from ccyclegan.core.generator_files import load_checkpoint, load_generator, verify_checkpoint
from ccyclegan.core.synthetic import synthetic_faces
from ccyclegan.train.loop import make_state
from ccyclegan.translate.api import ExpressionTranslator
from ccyclegan.translate.faces import TranslateError, read_image

FUZZ = dict(deadline=timedelta(seconds=10), derandomize=False,
            suppress_health_check=[HealthCheck.function_scoped_fixture,
                                   HealthCheck.too_slow, HealthCheck.data_too_large,
                                   HealthCheck.filter_too_much])


@contextlib.contextmanager
def no_hang(seconds: float = 30.0):
    """A case still running after `seconds` fails (hypothesis' deadline only judges a case
    once it has finished; this catches one that never would)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def fire(signum, frame):
        raise TimeoutError(f"hung for {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def tr(gen_path):
    return ExpressionTranslator.load(gen_path)


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


FACE = Image.fromarray(synthetic_faces(1, seed=3).images[0, 0].numpy())
SAMPLES = {fmt: _encode(FACE.convert("RGB") if fmt == "JPEG" else FACE, fmt)
           for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")}
SUFFIXES = [".png", ".jpg", ".gif", ".bmp", ".tif", ".webp", ".jpeg", ".ppm", ""]

image_bytes = st.one_of(
    st.binary(max_size=400),  # noise
    st.tuples(st.sampled_from(sorted(SAMPLES)), st.integers(0, 400)).map(  # truncated
        lambda t: SAMPLES[t[0]][:t[1]]),
    st.tuples(st.sampled_from(sorted(SAMPLES)), st.integers(0, 300), st.binary(min_size=1,
                                                                               max_size=8)).map(
        lambda t: _splice(SAMPLES[t[0]], t[1], t[2])),  # a few bytes overwritten
    st.tuples(st.sampled_from(sorted(SAMPLES)), st.binary(max_size=200)).map(
        lambda t: SAMPLES[t[0]][:24] + t[1]),  # a real header, then garbage
)


def _splice(data: bytes, at: int, junk: bytes) -> bytes:
    at = min(at, len(data))
    return data[:at] + junk + data[at + len(junk):]


def _typed_or_result(fn):
    """Run fn: a result or a TranslateError; anything else fails the test."""
    with no_hang():
        try:
            return fn()
        except TranslateError as e:
            assert str(e) and "\n" not in str(e)
            return None


# --------------------------------------------------------------------------- images


@settings(max_examples=120, **FUZZ)
@given(data=image_bytes, suffix=st.sampled_from(SUFFIXES), detect=st.booleans(),
       to=st.sampled_from(["happy", "all"]))
def test_random_bytes_as_photos(tmp_path_factory, tr, data, suffix, detect, to):
    path = tmp_path_factory.mktemp("bytes") / f"photo{suffix}"
    path.write_bytes(data)
    out = _typed_or_result(lambda: tr.translate(path, to=to, detect=detect))
    assert out is None or isinstance(out, Image.Image)


MODES = ["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "I", "F", "CMYK", "YCbCr", "HSV"]
sizes = st.one_of(
    st.tuples(st.integers(1, 4), st.integers(1, 4)),  # tiny
    st.tuples(st.integers(1, 3), st.integers(100, 12000)),  # very thin, either way round
    st.tuples(st.integers(100, 12000), st.integers(1, 3)),
    st.tuples(st.integers(5, 400), st.integers(5, 400)),
)


@settings(max_examples=40, **FUZZ)
@given(size=sizes, mode=st.sampled_from(MODES), detect=st.booleans(), seed=st.integers(0, 99),
       kind=st.sampled_from(["array", "pil", "png", "tiff", "jpeg"]))
def test_extreme_sizes_and_modes(tmp_path_factory, tr, size, mode, detect, seed, kind):
    w, h = size
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    img = rgb.convert(mode) if mode not in ("I;16", "I", "F") else rgb.convert("L").convert(mode)
    if kind == "array":
        arr = np.asarray(img.convert("L" if mode in ("L", "1", "I;16", "I", "F") else "RGB"))
        out = _typed_or_result(lambda: tr.translate(arr, to="sad", detect=detect))
        assert out is None or (out.shape == arr.shape and out.dtype == np.uint8)
        return
    if kind != "pil":
        path = tmp_path_factory.mktemp("size") / f"x.{kind}"
        try:
            img.save(path)
        except (OSError, ValueError, KeyError):
            assume(False)  # this format cannot hold this mode or size
        src = path
    else:
        src = img
    out = _typed_or_result(lambda: tr.translate(src, to="sad", detect=detect))
    assert out is None or out.size == (w, h)


def _bomb_png(w: int, h: int) -> bytes:
    """A valid PNG header claiming w x h grey pixels, with a few bytes of pixel data: a file
    of 60 bytes that would decode to w * h bytes (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("w,h,limit", [(20000, 20000, None), (1, 60_000_000, None),
                                       (9000, 9000, None), (7000, 7000, "10000000"),
                                       (300, 200, "50000")])
def test_pixel_limit_refuses_bombs_before_decoding(tmp_path, tr, gen_path, capsys,
                                                   monkeypatch, w, h, limit):
    if limit:
        monkeypatch.setenv("CCYCLEGAN_MAX_PIXELS", limit)
    path = tmp_path / "bomb.png"
    path.write_bytes(_bomb_png(w, h))
    says = r"over the limit of|too large to decode"
    with no_hang(10), pytest.raises(TranslateError, match=says):
        read_image(path)
    with no_hang(10), pytest.raises(TranslateError, match=says):
        tr.translate(path, to="happy")
    for extra in ([], ["--no-detect"]):
        rc = main(["translate", str(path), "--to", "happy", "--checkpoint", str(gen_path),
                   "-q", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "bomb.png" in err[0], err
    assert not list(tmp_path.glob("bomb_*"))


def test_pixel_limit_applies_to_arrays_and_pil_images(tr, monkeypatch):
    monkeypatch.setenv("CCYCLEGAN_MAX_PIXELS", "10000")
    with pytest.raises(TranslateError, match="200x100 = 20,000 pixels, over the limit of 10,000"):
        tr.translate(np.zeros((100, 200), np.uint8), detect=False)
    with pytest.raises(TranslateError, match="over the limit"):
        tr.translate(Image.new("L", (200, 100)), detect=False)
    monkeypatch.setenv("CCYCLEGAN_MAX_PIXELS", "20000")
    assert tr.translate(np.zeros((100, 200), np.uint8), detect=False).shape == (100, 200)


# --------------------------------------------------------------------------- odd paths

names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"),
                                       blacklist_characters="/\\\x00"),
                min_size=1, max_size=24)


@pytest.fixture(scope="module")
def photo_bytes():
    skimage_data = pytest.importorskip("skimage.data")
    small = Image.fromarray(skimage_data.astronaut()).resize((256, 256), Image.Resampling.BOX)
    return _encode(small, "JPEG")


@settings(max_examples=40, **FUZZ)
@given(name=names, folder=names, detect=st.booleans())
def test_odd_paths(tmp_path_factory, tr, gen_path, photo_bytes, capsys, name, folder, detect):
    assume(not name.startswith(".") and name.strip() == name)
    assume(folder not in (".", ".."))
    root = tmp_path_factory.mktemp("paths")
    try:
        (root / folder).mkdir(exist_ok=True)
        path = root / folder / f"{name}.jpg"
        path.write_bytes(photo_bytes if detect else SAMPLES["JPEG"])
    except OSError:
        assume(False)  # the file system refuses the name (too long in bytes, ...)
    with no_hang():
        out = tr.translate(path, to="surprise", detect=detect)
    assert out.size == ((256, 256) if detect else (48, 48))
    argv = ["translate", str(path), "--to", "fear", "--checkpoint", str(gen_path), "-q"]
    with no_hang():
        rc = main(argv + ([] if detect else ["--no-detect"]))
    assert rc == 0, capsys.readouterr().err
    written = path.with_name(f"{name}_fear.jpg")
    with Image.open(written) as img:
        assert img.size == out.size


@settings(max_examples=40, **FUZZ)
@given(data=image_bytes, name=names, detect=st.booleans())
def test_cli_on_random_bytes(tmp_path_factory, gen_path, capsys, data, name, detect):
    assume(not name.startswith(".") and name.strip() == name)
    root = tmp_path_factory.mktemp("clibytes")
    try:
        path = root / f"{name}.png"
        path.write_bytes(data)
    except OSError:
        assume(False)
    argv = ["translate", str(path), "--to", "all", "--checkpoint", str(gen_path), "-q"]
    with no_hang():
        rc = main(argv + ([] if detect else ["--no-detect"]))
    err = capsys.readouterr().err.strip().splitlines()
    if rc == 0:
        assert not err and path.with_name(f"{name}_all.png").is_file()
    else:
        assert rc == 2 and len(err) == 1 and err[0].startswith("ccyclegan translate: error: ")
        assert sorted(p.name for p in root.iterdir()) == [path.name]  # nothing written


# --------------------------------------------------------------------------- metadata


@pytest.fixture(scope="module")
def files(tiny_artifacts):
    """Tensors (and their checksums) of a generator, a training checkpoint, a classifier."""
    cfg = tiny_artifacts["cfg"]
    out = {}
    for name, key in (("generator", "generator"), ("train", "checkpoint"),
                      ("classifier", "classifier")):
        path = tiny_artifacts[key]
        tensors, meta = load_tensors(path)
        raw = path.read_bytes()
        header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
        out[name] = (tensors, meta, header["__metadata__"][DIGEST_KEY])
    out["state"] = make_state(cfg, torch.device("cpu"))
    return out


def _load_train(path, files):
    verify_checkpoint(path)
    load_checkpoint(files["state"], path)


LOADERS = {
    "generator": [lambda p, f: load_generator(p), lambda p, f: ExpressionTranslator.load(p)],
    "train": [lambda p, f: load_generator(p), _load_train],
    "classifier": [lambda p, f: load_classifier(p)],
}

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70),
                      st.floats(), st.text(max_size=12),
                      st.sampled_from(["train", "generator", "classifier", "classifier_state",
                                       "bottleneck", "planes", "sgd", "fp32", ""]))
json_value = st.recursive(json_leaf, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(max_size=10), c, max_size=4)),
    max_leaves=12)


@st.composite
def garbled(draw, meta: dict) -> str:
    """The file's real metadata, garbled one of several ways, as the JSON text stored."""
    how = draw(st.sampled_from(["replace all", "top key", "config field", "drop key",
                                "cut text", "splice text", "deep"]))
    m = json.loads(json.dumps(meta))
    if how == "replace all":
        return json.dumps(draw(json_value))
    if how == "top key":
        m[draw(st.sampled_from(sorted(m) + ["config", "progress", "kind"]))] = draw(json_value)
    elif how == "config field":
        cfg = m["config"]
        cfg[draw(st.sampled_from(sorted(cfg) + ["unknown_field"]))] = draw(json_value)
    elif how == "drop key":
        target = draw(st.sampled_from(["top", "config"]))
        d = m if target == "top" else m["config"]
        d.pop(draw(st.sampled_from(sorted(d))), None)
    elif how == "deep":
        return "[" * draw(st.integers(500, 5000)) + "1" + "]" * draw(st.integers(0, 5000))
    text = json.dumps(m)
    if how == "cut text":
        return text[:draw(st.integers(0, len(text)))]
    if how == "splice text":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.text(max_size=6)) + text[at + draw(st.integers(0, 6)):]
    return text


@settings(max_examples=250, **FUZZ)
@given(data=st.data(), which=st.sampled_from(["generator", "train", "classifier"]),
       keep_digest=st.booleans())
def test_garbled_checkpoint_metadata(tmp_path_factory, files, data, which, keep_digest):
    tensors, meta, digest = files[which]
    text = data.draw(garbled(meta), label="metadata")
    extra = {DIGEST_KEY: digest} if keep_digest else {}
    path = tmp_path_factory.mktemp("garbled") / "m.safetensors"
    path.write_bytes(st_save(tensors, metadata={"ccyclegan": text, **extra}))
    for load in LOADERS[which]:
        with no_hang():
            try:
                load(path, files)
            except (CheckpointError, ConfigError) as e:
                msg = str(e)
                assert "m.safetensors" in msg and "\n" not in msg and len(msg) < 1000, msg
