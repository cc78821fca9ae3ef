"""The bundled default model (src/ccyclegan/weights/ccyclegan_fer2013.safetensors): what the
release issue promises of the file, and that it runs as the default of the API and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REAL_FER
from PIL import Image

from ccyclegan.cli import commands as cli
from ccyclegan.core.checkpoint import load_tensors
from ccyclegan.core.generator_files import load_generator
from ccyclegan.core.models import Generator
from ccyclegan.core.synthetic import synthetic_faces
from ccyclegan.translate.api import ExpressionTranslator, bundled_model_path

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundled():
    path = bundled_model_path()
    assert path is not None, "the release model is missing from src/ccyclegan/weights/"
    return path


def test_file_is_small_fp16_and_describes_itself(bundled):
    assert bundled.stat().st_size <= 15 * 2 ** 20
    tensors, meta = load_tensors(bundled)
    assert meta["kind"] == "generator"
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    assert not meta["config"].get("input_blur")  # trained on sharp faces (FER2013 version 2)
    assert meta["progress"]["step"] > 0


def test_it_is_one_plain_generator_in_one_pass(bundled):
    """Issue 30, item 4: no second network, no mirror pass, no strength or condition scale."""
    G, _, _ = load_generator(bundled)
    assert type(G) is Generator
    _, meta = load_tensors(bundled)
    assert meta["members"] == 1 and meta["flip_average"] is False
    assert meta["strength"] == 1.0 and meta["condition_scale"] == 1.0


def test_default_api_and_cli_use_it(bundled, tmp_path):
    tr = ExpressionTranslator.load()
    assert tr.source == str(bundled)
    faces = synthetic_faces(1, seed=9).images[:, 0].numpy()
    after, delta = tr.edit(faces, ["happy", "surprise"], 1.0)
    assert np.abs(delta).mean() > 0.1
    same, *_ = tr.edit(faces, ["happy"], 0.0)
    assert np.array_equal(same[:, 0], faces)
    face = tmp_path / "face.png"
    Image.fromarray(faces[0]).save(face)
    assert cli.main(["translate", str(face), "--to", "sad", "--no-detect", "-q"]) == 0
    assert (tmp_path / "face_sad.png").is_file()


@pytest.mark.skipif(not REAL_FER.is_file(), reason="needs the real FER2013 file")
def test_on_real_test_faces_it_changes_the_face_more_than_the_border():
    from ccyclegan.core.data import load_split

    faces = load_split(REAL_FER, "test").images[:60, 0].numpy()
    tr = ExpressionTranslator.load()
    _, delta = tr.edit(faces, ["happy", "sad", "surprise"], 1.0)
    change = np.abs(delta).mean(axis=(0, 1))  # [48, 48]
    inside = change[8:40, 8:40].mean()
    border = np.concatenate([change[:8].ravel(), change[40:].ravel(),
                             change[8:40, :8].ravel(), change[8:40, 40:].ravel()]).mean()
    assert inside > border > 0


def _judge_paths():
    from ccyclegan.core.checkpoint import BUNDLED_JUDGE, BUNDLED_SECOND_JUDGE

    first = bundled_model_path(BUNDLED_JUDGE)
    assert first is not None, "the judge is missing from src/ccyclegan/weights/"
    second = bundled_model_path(BUNDLED_SECOND_JUDGE)
    return {"vgg": first, **({"resnet": second} if second is not None else {})}


def test_the_judges_ship_fp16_each_of_its_architecture():
    from ccyclegan.classifier import load_classifier

    for arch, path in _judge_paths().items():
        assert path.stat().st_size <= 15 * 2 ** 20
        tensors, _ = load_tensors(path)
        assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
        assert load_classifier(path)[1]["config"]["arch"] == arch


def test_the_judges_read_real_test_faces():
    """Each shipped judge reads real PublicTest faces about as its card says (300 faces: well
    above chance, 14 %, and the majority class, 25 %), and predicts every emotion."""
    from ccyclegan.classifier import load_classifier
    from ccyclegan.classifier.nets import predict
    from ccyclegan.core.data import load_split

    if not REAL_FER.exists():
        pytest.skip(f"real FER2013 not at {REAL_FER}")
    test = load_split(REAL_FER, "test").subset(slice(0, 300))
    for path in _judge_paths().values():
        pred = predict(load_classifier(path)[0], test.images).argmax(1)
        acc = (pred == test.labels).float().mean().item()
        assert acc > 0.55, f"{path.name}: {acc:.3f} on 300 PublicTest faces"
        assert set(pred.tolist()) == set(range(7)), f"{path.name} never predicts some emotion"


@pytest.mark.skipif(not REAL_FER.is_file(), reason="needs the real FER2013 file")
def test_a_grin_mostly_closes_for_angry_sad_and_neutral():
    """Issue 30, item 2 ("a grin becomes a closed mouth"): on the first 200 smiling PublicTest
    faces the first judge reads happy, the translation's mouth under the face's own smiling
    upper half (metrics.mouth_composite) reads happy for under 40 % of each closing target
    (s32, the file shipped before: 62 % for angry, 61 % for sad; this one 24 % and 21 %)."""
    from ccyclegan.classifier import load_classifier
    from ccyclegan.classifier.nets import predict
    from ccyclegan.core.data import EMOTIONS, load_split, normalize
    from ccyclegan.evaluate.metrics import GRIN_CLOSERS, mouth_composite

    happy = EMOTIONS.index("happy")
    judge = load_classifier(_judge_paths()["vgg"])[0].float()
    test = load_split(REAL_FER, "test")
    smiling = test.images[test.labels == happy]
    smiling = smiling[predict(judge, normalize(smiling)).argmax(1) == happy][:200]
    x = normalize(smiling)
    after, _ = ExpressionTranslator.load().edit(smiling[:, 0].numpy(), list(GRIN_CLOSERS), 1.0)
    for j, target in enumerate(GRIN_CLOSERS):
        out = normalize(torch.from_numpy(after[:, j, None]))
        smiles = (predict(judge, mouth_composite(x, out)).argmax(1) == happy).float().mean()
        assert smiles < 0.4, f"{target}: the grin stays on {smiles:.0%} of smiling faces"
