"""Is the edited face still the same person? Face-recognition embeddings of input and output.

dlib's ResNet face descriptor (128-d), after aligning the face with dlib's 5-point landmark
model; the weights come from the face-recognition-models package (the eval extra), so nothing
is downloaded at run time. Two descriptors closer than DLIB_THRESHOLD are the same person by
dlib's rule for full-size photos; FER_THRESHOLD is the 1%-false-accept distance for 48x48
faces. How they were measured: docs/notes.md.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

__all__ = [
    "CHIP_SIZE",
    "DLIB_THRESHOLD",
    "FER_THRESHOLD",
    "INSTALL",
    "FaceEmbedder",
    "IdentityModelError",
    "distance",
    "identity_kept",
]

DLIB_THRESHOLD = 0.6  # dlib's same-person rule (dnn_face_recognition_ex.cpp), full-size photos
FER_THRESHOLD = 0.54  # 1% of different-face pairs of FER2013 PublicTest (48x48) fall under it
CHIP_SIZE = 150  # the descriptor's input: a 150x150 aligned chip, 0.25 padding (get_face_chip)
CHIP_PADDING = 0.25
BATCH = 64  # chips per dlib call: bounds memory, one call per batch amortises the overhead

RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARK_FILE = "shape_predictor_5_face_landmarks.dat"
INSTALL = "pip install 'ccyclegan[eval]'"
_PIN = {"dlib": "dlib-bin==20.0.1.post1",
        "face_recognition_models": "face-recognition-models==0.3.0"}


class IdentityModelError(RuntimeError):
    """The face-recognition model cannot be loaded: a package or a model file is missing."""


def _dlib():
    try:
        import dlib
    except ImportError:
        raise IdentityModelError(f"the identity check needs dlib: {INSTALL} "
                                 f"(or pip install {_PIN['dlib']})") from None
    return dlib


def default_model_dir() -> Path:
    """The models folder of the installed face_recognition_models package.

    Located without importing the package: its 0.3.0 ``__init__`` imports ``pkg_resources``,
    which recent setuptools no longer provides.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise IdentityModelError(
            f"the identity check needs the face_recognition_models package: {INSTALL} "
            f"(or pip install {_PIN['face_recognition_models']}), or pass model_dir")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _as_faces(faces) -> np.ndarray:
    """[N,H,W] or [N,1,H,W] uint8 (numpy or a CPU torch tensor) -> [N,H,W] uint8."""
    a = np.asarray(faces)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 2:
        raise ValueError(f"faces: expected a batch [N,H,W], got one image {a.shape}; "
                         "add a leading axis")
    if a.ndim != 3 or a.dtype != np.uint8:
        raise ValueError(f"faces: expected uint8 [N,H,W] or [N,1,H,W], got {a.dtype} {a.shape}")
    return a


class FaceEmbedder:
    """dlib's 128-d face descriptor for small grey faces.

    ``model_dir``: a folder with ``dlib_face_recognition_resnet_model_v1.dat`` and
    ``shape_predictor_5_face_landmarks.dat`` (default: the installed face_recognition_models
    package). ``align=False`` skips the landmark step and feeds the upsampled crop as the chip
    (faster, but different faces come out closer: docs/notes.md).
    """

    def __init__(self, model_dir: str | os.PathLike[str] | None = None, *, align: bool = True,
                 threshold: float = DLIB_THRESHOLD):
        folder = default_model_dir() if model_dir is None else Path(model_dir)
        needed = [RECOGNITION_FILE] + ([LANDMARK_FILE] if align else [])
        missing = [name for name in needed if not (folder / name).is_file()]
        if missing:
            raise IdentityModelError(f"{folder}: no {' or '.join(missing)} there "
                                     f"(the face_recognition_models files; {INSTALL})")
        dlib = _dlib()  # after the files: a wrong path is reported even where dlib is missing
        self.model_dir = folder
        self.align = align
        self.threshold = float(threshold)
        self._dlib = dlib
        try:
            self._rec = dlib.face_recognition_model_v1(str(folder / RECOGNITION_FILE))
            self._landmarks = dlib.shape_predictor(str(folder / LANDMARK_FILE)) if align else None
        except RuntimeError as e:  # dlib's deserialize error is several lines: keep the first
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise IdentityModelError(f"{folder}: not dlib's model files ({first}); "
                                     f"{INSTALL}") from None

    def _chip(self, face: np.ndarray) -> np.ndarray:
        import cv2  # a base dependency (opencv-python-headless)

        big = cv2.resize(face, (CHIP_SIZE, CHIP_SIZE), interpolation=cv2.INTER_CUBIC)
        rgb = np.ascontiguousarray(np.repeat(big[:, :, None], 3, axis=2))
        if self._landmarks is None:
            return rgb
        box = self._dlib.rectangle(0, 0, CHIP_SIZE - 1, CHIP_SIZE - 1)  # the crop is the face
        shape = self._landmarks(rgb, box)
        return self._dlib.get_face_chip(rgb, shape, CHIP_SIZE, CHIP_PADDING)

    def embed(self, faces) -> np.ndarray:
        """uint8 faces [N,H,W] (or [N,1,H,W]) -> float32 descriptors [N,128]."""
        a = _as_faces(faces)
        out = np.empty((len(a), 128), np.float32)
        for i in range(0, len(a), BATCH):
            chips = [self._chip(face) for face in a[i:i + BATCH]]
            out[i:i + len(chips)] = np.asarray(self._rec.compute_face_descriptor(chips),
                                               np.float32)
        return out

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per-pair Euclidean distance [N] (the module-level ``distance``)."""
        return distance(a, b)

    def identity_kept(self, faces_in, faces_out) -> float:
        """Share of (input, output) face pairs that stay under this embedder's threshold."""
        return identity_kept(self.embed(faces_in), self.embed(faces_out), self.threshold)


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between row i of a and row i of b: [N,d], [N,d] -> [N] (dlib's
    descriptors are compared this way, not by cosine)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"embeddings: expected two [N,d] arrays of one shape, "
                         f"got {a.shape} and {b.shape}")
    return np.linalg.norm(a - b, axis=1)


def identity_kept(emb_in: np.ndarray, emb_out: np.ndarray,
                  threshold: float = DLIB_THRESHOLD) -> float:
    """Share of pairs (emb_in[i], emb_out[i]) closer than threshold: same person kept.

    Strictly under, as dlib's rule reads. Raises ValueError for no pairs (a share of nothing
    would be a silent NaN in a report).
    """
    d = distance(emb_in, emb_out)
    if len(d) == 0:
        raise ValueError("identity_kept: no pairs")
    return float(np.mean(d < threshold))
