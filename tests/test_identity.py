"""The identity check (ccyclegan.evaluate.identity).

The pure parts and the error messages are tested everywhere; the embedding itself needs the
optional `eval` extra (dlib-bin + face-recognition-models) and skips without it, and the
FER2013 check also needs the real data file.
"""

import importlib.util
import io
import sys

import numpy as np
import pytest
from conftest import REAL_FER
from PIL import Image

from ccyclegan.evaluate import identity as identity
from ccyclegan.evaluate.identity import (
    DLIB_THRESHOLD,
    FER_THRESHOLD,
    LANDMARK_FILE,
    RECOGNITION_FILE,
    FaceEmbedder,
    IdentityModelError,
    distance,
    identity_kept,
)

NEEDS_EVAL = "needs the optional eval extra: pip install 'ccyclegan[eval]'"


# ---------------------------------------------------------------------------------------------
# Pure functions


def test_distance_is_per_pair_euclidean():
    a = np.array([[0.0, 0.0], [1.0, 1.0], [3.0, 4.0]], np.float32)
    b = np.array([[3.0, 4.0], [1.0, 1.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(distance(a, b), [5.0, 0.0, 5.0])


def test_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        distance(np.zeros((3, 128)), np.zeros((2, 128)))
    with pytest.raises(ValueError, match="one shape"):
        distance(np.zeros(128), np.zeros(128))


def test_identity_kept_counts_pairs_strictly_under_threshold():
    emb_in = np.zeros((4, 2))
    emb_out = np.array([[0.1, 0.0], [0.6, 0.0], [0.0, 0.59], [2.0, 0.0]])
    assert identity_kept(emb_in, emb_out, 0.6) == 0.5  # 0.6 itself is not under 0.6
    assert identity_kept(emb_in, emb_out, 10.0) == 1.0
    assert identity_kept(emb_in, emb_out, 0.05) == 0.0
    assert identity_kept(emb_in, emb_out) == 0.5  # default: dlib's 0.6


def test_identity_kept_rejects_no_pairs():
    with pytest.raises(ValueError, match="no pairs"):
        identity_kept(np.zeros((0, 128)), np.zeros((0, 128)))


def test_thresholds_are_ordered():
    # FER faces at 48x48 look more alike than full-size photos: a stricter threshold
    assert 0 < FER_THRESHOLD < DLIB_THRESHOLD == 0.6


def test_face_batches_are_checked():
    ok = np.zeros((2, 1, 48, 48), np.uint8)
    assert identity._as_faces(ok).shape == (2, 48, 48)
    with pytest.raises(ValueError, match="one image"):
        identity._as_faces(np.zeros((48, 48), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        identity._as_faces(np.zeros((2, 48, 48), np.float32))


# ---------------------------------------------------------------------------------------------
# Clear errors (no optional package needed)


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_model_folder_names_path_and_install(tmp_path):
    where = tmp_path / "nowhere"
    with pytest.raises(IdentityModelError) as e:
        FaceEmbedder(where)
    msg = _one_line(e)
    assert str(where) in msg and RECOGNITION_FILE in msg and "pip install" in msg


def test_missing_landmark_file_is_named(tmp_path):
    (tmp_path / RECOGNITION_FILE).write_bytes(b"")
    with pytest.raises(IdentityModelError) as e:
        FaceEmbedder(tmp_path)
    msg = _one_line(e)
    assert LANDMARK_FILE in msg and RECOGNITION_FILE not in msg


def test_missing_dlib_names_the_install(tmp_path, monkeypatch):
    for name in (RECOGNITION_FILE, LANDMARK_FILE):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib raises ImportError
    with pytest.raises(IdentityModelError) as e:
        FaceEmbedder(tmp_path)
    msg = _one_line(e)
    assert "dlib" in msg and "pip install 'ccyclegan[eval]'" in msg and "dlib-bin==" in msg


def test_missing_model_package_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models"
                        else real(name, *a))
    with pytest.raises(IdentityModelError) as e:
        FaceEmbedder()
    msg = _one_line(e)
    assert "face_recognition_models" in msg and "face-recognition-models==" in msg


# ---------------------------------------------------------------------------------------------
# The model itself (optional extra)


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("dlib", reason=NEEDS_EVAL)
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip(NEEDS_EVAL)
    return FaceEmbedder()


def _shift(face: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Move the content by (dx, dy) pixels, |d| <= 1, repeating the edge."""
    h, w = face.shape
    p = np.pad(face, 1, mode="edge")
    return p[1 - dy:1 - dy + h, 1 - dx:1 - dx + w].copy()


def _jpeg(face: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf))


def test_shift_helper():
    f = np.arange(9, dtype=np.uint8).reshape(3, 3)
    np.testing.assert_array_equal(_shift(f, 1, 0), [[0, 0, 1], [3, 3, 4], [6, 6, 7]])
    np.testing.assert_array_equal(_shift(f, 0, -1), [[3, 4, 5], [6, 7, 8], [6, 7, 8]])


@pytest.fixture(scope="module")
def astronaut_face(astronaut):
    """The astronaut's face framed as FER2013 frames faces: grey, 48x48."""
    from ccyclegan.translate.faces import crop_face, detect_faces, frame_box

    boxes = detect_faces(astronaut)
    assert len(boxes) == 1
    return crop_face(astronaut, frame_box(boxes[0]))


def test_embed_shape_dtype_and_determinism(embedder):
    from ccyclegan.core.synthetic import synthetic_faces

    images = synthetic_faces(1, seed=0).images[:3]  # torch uint8 [3,1,48,48]
    a = embedder.embed(images)
    assert a.shape == (3, 128) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, embedder.embed(images[:, 0].numpy()))
    assert embedder.embed(np.zeros((0, 48, 48), np.uint8)).shape == (0, 128)


def test_same_real_face_lightly_changed_stays_under_threshold(embedder, astronaut_face):
    f = astronaut_face
    copies = np.stack([f, _shift(f, 1, 0), _shift(f, 0, -1), _jpeg(f),
                       np.clip(f + np.random.default_rng(0).normal(0, 3, f.shape), 0, 255)
                       .astype(np.uint8)])
    e = embedder.embed(copies)
    d = embedder.distance(np.repeat(e[:1], len(e) - 1, axis=0), e[1:])
    assert (d < FER_THRESHOLD).all(), d
    assert identity_kept(np.repeat(e[:1], len(e) - 1, axis=0), e[1:], FER_THRESHOLD) == 1.0


def test_real_face_is_not_a_synthetic_face(embedder, astronaut_face):
    from ccyclegan.core.synthetic import synthetic_faces

    others = synthetic_faces(1, seed=3).images[:, 0].numpy()  # 7 drawn faces
    e_in = np.repeat(embedder.embed(astronaut_face[None]), len(others), axis=0)
    assert identity_kept(e_in, embedder.embed(others), DLIB_THRESHOLD) == 0.0


def test_embedder_identity_kept_on_faces(embedder, astronaut_face):
    faces = np.stack([astronaut_face] * 2)
    assert embedder.identity_kept(faces, faces) == 1.0


def test_align_false_runs_without_landmarks(embedder, astronaut_face):
    plain = FaceEmbedder(embedder.model_dir, align=False)
    e = plain.embed(np.stack([astronaut_face, _shift(astronaut_face, 1, 0)]))
    assert e.shape == (2, 128) and distance(e[:1], e[1:])[0] < FER_THRESHOLD


def test_unreadable_model_file_is_one_clear_line(embedder, tmp_path):
    for name in (RECOGNITION_FILE, LANDMARK_FILE):
        (tmp_path / name).write_bytes(b"not a model")
    with pytest.raises(IdentityModelError) as e:
        FaceEmbedder(tmp_path)
    assert str(tmp_path) in _one_line(e)


@pytest.mark.slow
@pytest.mark.skipif(not REAL_FER.is_file(), reason=f"needs the real FER2013 file at {REAL_FER}")
def test_fer2013_perturbed_kept_and_different_faces_apart(embedder):
    """40 real PublicTest faces: a 1-pixel shift plus JPEG re-encoding keeps the identity,
    and few pairs of different faces fall under FER_THRESHOLD (about 1% measured on 500)."""
    from ccyclegan.core.data import load_split

    faces = load_split(REAL_FER, "test").images[:, 0].numpy()
    keep, seen = [], set()
    for i, f in enumerate(faces):  # FER2013 has blank images and pixel-identical copies
        if f.std() >= 5 and f.tobytes() not in seen:
            seen.add(f.tobytes())
            keep.append(i)
        if len(keep) == 40:
            break
    faces = faces[keep]
    e = embedder.embed(faces)
    changed = embedder.embed(np.stack([_jpeg(_shift(f, 1, 0)) for f in faces]))
    assert identity_kept(e, changed, FER_THRESHOLD) >= 0.95
    i, j = np.triu_indices(len(faces), 1)
    assert identity_kept(e[i], e[j], FER_THRESHOLD) <= 0.05
