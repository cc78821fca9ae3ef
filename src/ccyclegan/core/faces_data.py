"""The shared core of the data modules: the emotion labels, FaceData (faces as the models see
them), DataError, and the image-size limit; fer2013.py and folders.py read and write files of
them, data.py ties it together (and re-exports all of this).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "EMOTIONS",
    "IMAGE_SIZE",
    "NUM_CLASSES",
    "DataError",
    "FaceData",
    "PathLike",
    "check_image_size",
    "max_pixels",
    "natural_key",
]

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)
IMAGE_SIZE = 48

PathLike = str | os.PathLike[str]


class DataError(ValueError):
    """Bad input data. The message always names the file and the line (CSV) or the path
    (images), and the field, so the user can go and fix it."""


# --------------------------------------------------------------------------------------------
# The in-memory form


@dataclass(frozen=True, eq=False, repr=False)
class FaceData:
    """Faces and their emotion labels, checked once here so no consumer has to re-check."""

    images: torch.Tensor  # uint8 [N, 1, 48, 48]
    labels: torch.Tensor  # int64 [N], 0..6

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
            raise ValueError("FaceData: images and labels must be torch tensors")
        if images.dtype != torch.uint8:
            raise ValueError(f"FaceData: images must be uint8, got {images.dtype}")
        if images.ndim != 4 or tuple(images.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(
                f"FaceData: images must have shape [N, 1, {IMAGE_SIZE}, {IMAGE_SIZE}], "
                f"got {list(images.shape)}")
        if labels.dtype != torch.int64:
            raise ValueError(f"FaceData: labels must be int64, got {labels.dtype}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"FaceData: labels must have shape [{images.shape[0]}], got {list(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= NUM_CLASSES):
            raise ValueError(f"FaceData: labels must be in 0..{NUM_CLASSES - 1}")
        # Views from subset()/slicing are made contiguous so .view() and numpy work downstream.
        object.__setattr__(self, "images", images.contiguous())
        object.__setattr__(self, "labels", labels.contiguous())

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return f"FaceData(n={len(self)}, class_counts={self.class_counts()})"

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels.cpu(), minlength=NUM_CLASSES).tolist()

    def subset(self, index: torch.Tensor | Sequence[int] | Sequence[bool] | slice | int
               ) -> FaceData:
        """Index like a tensor, but a single int keeps the batch dimension."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index)
            if index.dtype != torch.bool:
                index = index.long()
            if index.ndim == 0:
                index = index.reshape(1)
        return FaceData(self.images[index], self.labels[index])


def natural_key(name: str, ignore_case: bool = False) -> tuple[str | int, ...]:
    """Sort key under which Training_9.jpg comes before Training_10.jpg (runs of digits compare
    as numbers), as in FER2013's row order; ignore_case: the rest compares as a file browser
    sorts it, without case."""
    parts = re.split(r"(\d+)", name)
    if ignore_case:
        parts = [part.lower() for part in parts]
    return tuple(int(part) if k % 2 else part for k, part in enumerate(parts))


DEFAULT_MAX_PIXELS = 40_000_000


def max_pixels() -> int:
    """Largest image (width x height) we decode; $CCYCLEGAN_MAX_PIXELS overrides. Checked on
    the header, before decoding, so a tiny file claiming 20000x20000 is refused cheaply."""
    raw = os.environ.get("CCYCLEGAN_MAX_PIXELS", "")
    return int(raw) if raw.strip().isdigit() else DEFAULT_MAX_PIXELS


def check_image_size(img: Image.Image, path: PathLike) -> None:
    w, h = img.size
    limit = max_pixels()
    if w * h > limit or w < 1 or h < 1:
        raise DataError(f"{path}: image is {w}x{h} = {w * h:,} pixels, over the limit of "
                        f"{limit:,} (set CCYCLEGAN_MAX_PIXELS to allow larger images)")
