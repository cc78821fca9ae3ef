"""FER2013 faces in and out: the Kaggle CSV, image folders, and the tensors the models see.

Everything is loaded eagerly into uint8 tensors: the whole of FER2013 is 75 MB at one byte a
pixel, so there is no point in a lazy dataset, and one pass over the input means a malformed row
is reported (file, line, field) before any training starts instead of hours into it.

The pieces: faces_data.py (FaceData, DataError, the labels), fer2013.py (the CSV), folders.py
(image folders); this module dispatches between them and re-exports their public names.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ccyclegan.core.faces_data import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS
from ccyclegan.core.faces_data import (
    EMOTIONS,
    IMAGE_SIZE,
    NUM_CLASSES,
    DataError,
    FaceData,
    natural_key,
)
from ccyclegan.core.faces_data import PathLike as PathLike
from ccyclegan.core.faces_data import check_image_size as check_image_size
from ccyclegan.core.faces_data import max_pixels as max_pixels
from ccyclegan.core.fer2013 import load_csv_split, read_fer2013_csv, write_fer2013_csv
from ccyclegan.core.folders import load_folder_split, read_image_folder, write_image_folder

__all__ = [
    "EMOTIONS",
    "IMAGE_SIZE",
    "NUM_CLASSES",
    "DataError",
    "FaceData",
    "denormalize",
    "drop_blank",
    "load_split",
    "natural_key",
    "normalize",
    "read_fer2013_csv",
    "read_image_folder",
    "write_fer2013_csv",
    "write_image_folder",
]


# --------------------------------------------------------------------------------------------
# Dispatch


def _listing(folder: Path, limit: int = 20) -> str:
    names = sorted(p.name for p in folder.iterdir())
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "nothing"


def load_split(path: PathLike, split: str) -> FaceData:
    """One split ("train" or "test", or a raw name) from a FER2013 CSV or an image folder.

    "test" means PublicTest (PrivateTest if that is all there is) for a CSV, and
    test/val/validation/publictest for a folder; a flat class-folder layout serves any split.
    """
    path = Path(path)
    if not path.exists():
        parent = next((p for p in path.parents if p.is_dir()), None)
        where = f"; {parent} has: {_listing(parent)}" if parent is not None else ""
        raise DataError(f"{path}: no such file or folder{where}")
    if path.is_dir():
        return load_folder_split(path, split)
    return load_csv_split(path, split)


# --------------------------------------------------------------------------------------------
# Tensors


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 -1..1, the range of the generator's tanh output."""
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    return images.to(torch.float32) / 127.5 - 1.0


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """float -1..1 -> uint8, clamped and rounded so the exact inverse of normalize."""
    return ((x.detach().to(torch.float32).clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def drop_blank(data: FaceData, min_std: float = 1.0) -> tuple[FaceData, int]:
    """Drop near-constant images (FER2013 has a dozen all-black ones): they carry no
    expression and would teach the discriminator that black is a face. Returns the count so
    callers can log it rather than silently shrink the data."""
    if len(data) == 0:
        return data, 0
    flat = data.images.reshape(len(data), -1)
    std = torch.cat([chunk.to(torch.float32).std(dim=1, correction=0)
                     for chunk in flat.split(8192)])
    keep = std >= min_std
    removed = int((~keep).sum())
    return (data if removed == 0 else data.subset(keep)), removed


def rng_for(seed: int, stream: int, index: int) -> torch.Generator:
    """A generator that depends only on (seed, stream, index): data order, flips and
    augmentations become pure functions of the step, so a resumed run replays them exactly."""
    return torch.Generator().manual_seed((seed * 1_000_003 + stream * 7_919 + index) % 2**63)


def face_sharpness(images: torch.Tensor) -> torch.Tensor:
    """Per face: mean absolute difference between neighbouring pixels, on the 0..255 scale.
    uint8 faces as stored, or float faces in [-1, 1] (typical values: docs/notes.md)."""
    x = images.float() if images.dtype == torch.uint8 else (images.float() + 1) * 127.5
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    return (dx + dy) / 2


def sharpness(data: FaceData, limit: int = 4000) -> float:
    """Mean of face_sharpness over at most `limit` faces."""
    if len(data) == 0:
        return float("nan")
    return float(face_sharpness(data.images[:limit]).mean())


def blur_warning(train: FaceData, test: FaceData, ratio: float = 0.5) -> str | None:
    """A warning when the training faces are much blurrier than the test faces: a model then
    learns blurred faces, and a classifier trained on them fails on sharp ones."""
    s_train, s_test = sharpness(train), sharpness(test)
    if not (s_train == s_train and s_test == s_test) or s_test <= 0:
        return None
    if s_train < ratio * s_test:
        return (f"warning: the training faces are much blurrier than the test faces (mean "
                f"neighbour difference {s_train:.1f} vs {s_test:.1f}): the training split looks "
                f"degraded (blurred). Models trained on it learn blurred faces and do not "
                f"transfer to sharp ones; use a clean copy of the data if you can.")
    return None
