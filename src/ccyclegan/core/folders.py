"""Faces as image folders: root/<split>/<emotion>/<image> (or root/<emotion>/<image>) in and
out, any image format, converted to 48x48 grey faces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ccyclegan.core.faces_data import (
    EMOTIONS,
    IMAGE_SIZE,
    NUM_CLASSES,
    DataError,
    FaceData,
    PathLike,
    check_image_size,
    natural_key,
)

__all__ = ["load_folder_split", "read_image_folder", "write_image_folder"]

_CLASS_NAMES = {name: k for k, name in enumerate(EMOTIONS)} | {
    "anger": 0, "disgusted": 1, "fearful": 2, "happiness": 3, "sadness": 4, "surprised": 5,
} | {str(k): k for k in range(NUM_CLASSES)}
_IGNORED_NAMES = {"thumbs.db", "desktop.ini", "__macosx"}
_FOLDER_SPLITS = {
    "train": ("train", "training"),
    "training": ("train", "training"),
    "test": ("test", "val", "validation", "publictest"),
    "val": ("val", "validation"),
    "validation": ("val", "validation"),
}


def _class_of(name: str) -> int | None:
    return _CLASS_NAMES.get(name.strip().lower())


def _visible(folder: Path) -> list[Path]:
    """Hidden and OS bookkeeping entries are not data; everything else must be."""
    return sorted((p for p in folder.iterdir()
                   if not p.name.startswith(".") and p.name.lower() not in _IGNORED_NAMES),
                  key=lambda p: natural_key(p.name))


def _unknown_class(path: Path) -> DataError:
    return DataError(f"{path}: unknown class folder {path.name!r} (expected one of "
                     f"{', '.join(EMOTIONS)}, or 0..{NUM_CLASSES - 1})")


def _folder_splits(root: Path) -> dict[str, Path]:
    """Map split name to the folder holding its class folders; a flat layout is split "all"."""
    entries = _visible(root)
    folders = [p for p in entries if p.is_dir()]
    files = [p for p in entries if not p.is_dir()]
    if files:
        raise DataError(f"{files[0]}: file outside a class folder (expected "
                        f"{root}/<emotion>/<image> or {root}/<split>/<emotion>/<image>)")
    if not folders:
        raise DataError(f"{root}: no class folders ({', '.join(EMOTIONS)}) or split folders "
                        "(train/<emotion>, test/<emotion>) found")
    classes = [p for p in folders if _class_of(p.name) is not None]
    if classes:
        others = [p for p in folders if _class_of(p.name) is None]
        if others:
            raise _unknown_class(others[0])
        return {"all": root}
    return {p.name: p for p in folders}


def _load_face(path: Path) -> np.ndarray:
    """Any image file -> 48x48 grey, upright per EXIF, centre-cropped so faces keep proportions."""
    try:
        with Image.open(path) as img:
            check_image_size(img, path)
            img.draft("L", (2 * IMAGE_SIZE, 2 * IMAGE_SIZE))  # JPEG only: decode big photos small
            img = ImageOps.exif_transpose(img)
            grey = _to_grey(img)
    except Exception as e:  # noqa: BLE001 - a hostile file can make a decoder raise anything
        raise DataError(f"{path}: not a readable image ({e})") from e
    w, h = grey.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    grey = grey.crop((left, top, left + side, top + side))
    if side != IMAGE_SIZE:
        # Area averaging when shrinking (no ringing), bicubic when enlarging (no blockiness).
        method = Image.Resampling.BOX if side > IMAGE_SIZE else Image.Resampling.BICUBIC
        grey = grey.resize((IMAGE_SIZE, IMAGE_SIZE), method)
    return np.asarray(grey, dtype=np.uint8)


def _to_grey(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I") or img.mode == "F":
        # 16-bit PNG/TIFF: Pillow's convert("L") clips instead of scaling.
        values = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    return img.convert("L")


def _face_data(images: np.ndarray, labels: np.ndarray) -> FaceData:
    images = np.ascontiguousarray(images, dtype=np.uint8).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    return FaceData(torch.from_numpy(images), torch.from_numpy(np.asarray(labels, np.int64)))


def _read_class_folders(folder: Path) -> FaceData:
    items: list[tuple[int, tuple[str | int, ...], Path]] = []
    for sub in _visible(folder):
        if not sub.is_dir():
            raise DataError(f"{sub}: file outside a class folder (expected "
                            f"{folder}/<emotion>/<image>)")
        label = _class_of(sub.name)
        if label is None:
            raise _unknown_class(sub)
        for file in _visible(sub):
            if file.is_dir():
                raise DataError(f"{file}: unexpected folder inside class folder {sub.name!r}")
            items.append((label, natural_key(sub.name), file))
    if not items:
        raise DataError(f"{folder}: no images in its class folders")
    items.sort(key=lambda it: it[:2])  # stable: files already in natural order per folder
    images = np.stack([_load_face(path) for _, _, path in items])
    return _face_data(images, np.asarray([label for label, _, _ in items], np.int64))


def read_image_folder(root: PathLike) -> dict[str, FaceData]:
    """Read root/<split>/<emotion>/* (or root/<emotion>/*, split "all"), sorted by class then
    file name, so that the result never depends on the file system's listing order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    return {name: _read_class_folders(folder) for name, folder in _folder_splits(root).items()}


def write_image_folder(root: PathLike, splits: dict[str, FaceData], ext: str = "png") -> None:
    """Write root/<split>/<emotion>/<index>.<ext>, the layout read_image_folder reads."""
    root = Path(root)
    ext = ext.lstrip(".").lower()
    options = {"quality": 95} if ext in ("jpg", "jpeg", "webp") else {}
    for split, data in splits.items():
        width = len(str(max(len(data) - 1, 0)))
        for name in EMOTIONS:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        pixels = data.images[:, 0].cpu().numpy()
        for k, label in enumerate(data.labels.tolist()):
            out = root / split / EMOTIONS[label] / f"{k:0{width}d}.{ext}"
            Image.fromarray(pixels[k]).save(out, **options)


def load_folder_split(path: Path, split: str) -> FaceData:
    """One split of an image folder (data.load_split's folder half): test/val/validation/
    publictest for "test"; a flat class-folder layout serves any split."""
    key = split.strip().lower()
    folders = _folder_splits(path)
    if list(folders.values()) == [path]:  # flat layout, not a split that is named "all"
        return _read_class_folders(path)
    by_lower = {name.lower(): name for name in folders}
    tried = _FOLDER_SPLITS.get(key, (key,))
    for name in tried:
        if name in by_lower:
            return _read_class_folders(folders[by_lower[name]])
    raise DataError(f"{path}: no folder for split {split!r} (looked for {', '.join(tried)}); "
                    f"split folders present: {', '.join(folders)}")
