"""What a caller may ask the translator for, checked: target emotions, an intensity, and an
image (path, PIL image or uint8 array), which comes back in the same kind it came in.

Shared by the Python API, the command line and the web page; bad input is a TranslateError.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from PIL import Image

from ccyclegan.core.data import EMOTIONS
from ccyclegan.translate.faces import (
    Picture,
    TranslateError,
    check_size,
    from_pil,
    read_image,
    to_pil,
)


def parse_targets(to: str) -> tuple[str, ...]:
    """An emotion name (any case) -> (name,); several, comma-separated -> them in the order
    given, once each (a strip of each face in those, as "all" gives); "all" -> all 7 in
    EMOTIONS order."""
    key = str(to).strip().lower()
    if key == "all":
        return EMOTIONS
    names = [k.strip() for k in key.split(",")]
    for name in names:
        if name not in EMOTIONS:
            what = f"{name!r} in {to!r}" if len(names) > 1 else repr(to)
            raise TranslateError(f"unknown emotion {what} (choose one of {', '.join(EMOTIONS)}"
                                 ", several comma-separated, or all)")
    return tuple(dict.fromkeys(names))


def check_intensity(value: Any) -> float:
    """A float in [0, 1] (strings accepted, for the command line)."""
    try:
        a = float(value)
    except (TypeError, ValueError):
        raise TranslateError(f"intensity must be a number in [0, 1], got {value!r}") from None
    if not math.isfinite(a) or not 0.0 <= a <= 1.0:
        raise TranslateError(f"intensity must be in [0, 1], got {value!r}")
    return a


def as_picture(image: Any) -> tuple[Picture, str, Any]:
    """-> (picture, kind, detail) where kind is "pil" or "array" and detail what restore()
    needs to give the same layout back."""
    if isinstance(image, str | os.PathLike):
        return read_image(image), "pil", None
    if isinstance(image, Image.Image):
        check_size(*image.size)
        try:
            return from_pil(image), "pil", image.mode
        except (OSError, ValueError) as e:
            raise TranslateError(f"cannot read this PIL image ({e})") from None
    if isinstance(image, np.ndarray):
        if image.ndim in (2, 3):
            check_size(image.shape[1], image.shape[0])
        if image.dtype != np.uint8:
            raise TranslateError(f"image arrays must be uint8, got {image.dtype}")
        if image.ndim == 2:
            return Picture(np.ascontiguousarray(image)), "array", image.shape
        if image.ndim == 3 and image.shape[2] in (1, 3, 4):
            pixels = image[:, :, 0] if image.shape[2] == 1 else image[:, :, :3]
            alpha = image[:, :, 3].copy() if image.shape[2] == 4 else None
            return Picture(np.ascontiguousarray(pixels), alpha), "array", image.shape
        raise TranslateError(f"image arrays must be HxW (grey) or HxWx3 (RGB), got shape "
                             f"{image.shape}")
    raise TranslateError(f"expected a path, a PIL image or a numpy array, got "
                         f"{type(image).__name__}")


def image_name(image: Any) -> str:
    """How messages name the image: its path, or "the image"."""
    return str(image) if isinstance(image, str | os.PathLike) else "the image"


def restore(pic: Picture, kind: str, detail: Any) -> Any:
    """pic in the kind as_picture() read: a PIL image, or an array of the input's layout."""
    if kind == "pil":  # grey stays "L" ("LA" with alpha), colour "RGB" ("RGBA")
        return to_pil(pic)
    pixels = pic.pixels
    if len(detail) == 3:  # HxWx1, HxWx3, HxWx4 in, same layout out
        if detail[2] == 1:
            pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels[:, :, :1]
        elif detail[2] == 4:
            alpha = pic.alpha if pic.alpha is not None else np.full(pixels.shape[:2], 255,
                                                                    np.uint8)
            pixels = np.dstack([pixels, alpha])
    return pixels
