"""FER2013 faces in and out: the Kaggle CSV, image folders, and the tensors the models see.

Everything is loaded eagerly into uint8 tensors: the whole of FER2013 is 75 MB at one byte a
pixel, so there is no point in a lazy dataset, and one pass over the input means a malformed row
is reported (file, line, field) before any training starts instead of hours into it.
"""

from __future__ import annotations

import csv
import functools
import gzip
import os
import re
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps

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

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)
IMAGE_SIZE = 48

PathLike = str | os.PathLike[str]

_NPIX = IMAGE_SIZE * IMAGE_SIZE
_CSV_CHUNK_ROWS = 4096  # rows parsed per numpy call: bounds memory, keeps the fast path fast
_USAGES = ("Training", "PublicTest", "PrivateTest")


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


def _face_data(images: np.ndarray, labels: np.ndarray) -> FaceData:
    images = np.ascontiguousarray(images, dtype=np.uint8).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    return FaceData(torch.from_numpy(images), torch.from_numpy(np.asarray(labels, np.int64)))


# --------------------------------------------------------------------------------------------
# Kaggle CSV

_LABEL_CODES = {str(k).encode(): k for k in range(NUM_CLASSES)}
_USAGE_CODES = {u.encode(): k for k, u in enumerate(_USAGES)}
_USAGE_LOWER = {u.lower(): k for k, u in enumerate(_USAGES)}
_GZIP_MAGIC = b"\x1f\x8b"


def _row_error(path: Path, lineno: int, field: str, msg: str) -> DataError:
    return DataError(f"{path}: line {lineno}: field '{field}': {msg}")


def _open_maybe_gzip(path: Path) -> IO[bytes]:
    """By magic bytes, because downloaded files are often renamed or decompressed in place."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")


def _numbered_lines(f: Iterable[bytes], path: Path) -> Iterator[tuple[int, bytes]]:
    """Turns a truncated or corrupt gzip stream into a DataError that says how far it got."""
    lineno = 0
    it = iter(f)
    while True:
        try:
            raw = next(it)
        except StopIteration:
            return
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: line {lineno + 1}: cannot read the file ({e})") from e
        lineno += 1
        yield lineno, raw


def _split_fields(line: bytes, path: Path, lineno: int) -> list[bytes]:
    if b'"' not in line:  # the Kaggle fer2013.csv: no quoting, so a plain split is exact
        return line.split(b",")
    try:  # Kaggle's train.csv quotes the pixels field
        return [s.encode("latin-1") for s in next(csv.reader([line.decode("latin-1")]))]
    except (csv.Error, StopIteration) as e:
        raise DataError(f"{path}: line {lineno}: malformed CSV row ({e})") from e


def _parse_header(line: bytes, path: Path) -> tuple[list[str], int, int, int | None]:
    text = line.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    try:
        names = [n.strip() for n in next(csv.reader([text]), [])]
    except csv.Error as e:
        raise DataError(f"{path}: line 1: malformed CSV header ({e})") from e
    where: dict[str, int] = {}
    for k, name in enumerate(names):
        key = name.lower()
        if key in where:
            raise DataError(f"{path}: line 1: column '{name}' appears twice")
        where[key] = k
    for need in ("emotion", "pixels"):
        if need not in where:
            raise DataError(
                f"{path}: line 1: missing column '{need}' (header is {','.join(names)!r}; "
                "expected emotion,pixels[,Usage])")
    return names, where["emotion"], where["pixels"], where.get("usage")


def _parse_label(field: bytes, path: Path, lineno: int, name: str) -> int:
    code = _LABEL_CODES.get(field)
    if code is not None:
        return code
    text = field.strip()
    if text.isdigit():
        value = int(text)
        if value < NUM_CLASSES:
            return value
        raise _row_error(path, lineno, name, f"label {value} is outside 0..{NUM_CLASSES - 1}")
    shown = text[:20].decode("latin-1")
    raise _row_error(path, lineno, name,
                     f"label {shown!r} is not an integer in 0..{NUM_CLASSES - 1}")


def _parse_usage(field: bytes, path: Path, lineno: int, name: str) -> int:
    code = _USAGE_CODES.get(field)
    if code is not None:
        return code
    text = field.strip().decode("latin-1")
    code = _USAGE_LOWER.get(text.lower())
    if code is not None:
        return code
    raise _row_error(path, lineno, name,
                     f"unknown value {text[:40]!r} (expected one of {', '.join(_USAGES)})")


def _pixels_fast(fields: list[bytes]) -> np.ndarray | None:
    """All rows of a chunk in one numpy call; None means "look closer", never "bad".

    Only accepts the canonical form (single spaces, 1-3 digit values); anything else goes to
    the per-row path, which either accepts it too or names the offending row.
    """
    if any(f.count(b" ") != _NPIX - 1 for f in fields):
        return None
    joined = b" ".join(fields)
    if joined.translate(None, b"0123456789 "):
        return None
    with warnings.catch_warnings():  # numpy < 2 warns (instead of raising) on unparsed text
        warnings.simplefilter("error", DeprecationWarning)
        try:
            values = np.fromstring(joined, dtype=np.int32, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    if values.size != len(fields) * _NPIX or values.min() < 0 or values.max() > 255:
        return None
    # Re-count the digits the values need: catches leading zeros and int32 wrap-around
    # ("4294967301" would otherwise parse as 5).
    digits = values.size + np.count_nonzero(values >= 10) + np.count_nonzero(values >= 100)
    if digits + values.size - 1 != len(joined):
        return None
    return values.astype(np.uint8).reshape(len(fields), _NPIX)


def _pixels_row(field: bytes, path: Path, lineno: int, name: str) -> np.ndarray:
    tokens = field.split()
    if len(tokens) != _NPIX:
        raise _row_error(path, lineno, name,
                         f"expected {_NPIX} values ({IMAGE_SIZE}x{IMAGE_SIZE}), got {len(tokens)}")
    fast = _pixels_fast([b" ".join(tokens)])
    if fast is not None:
        return fast[0]
    values = []
    for k, tok in enumerate(tokens, start=1):
        shown = tok[:20].decode("latin-1")
        if not tok.isdigit():
            raise _row_error(path, lineno, name,
                             f"value {k} {shown!r} is not an integer in 0..255")
        value = int(tok)
        if value > 255:
            raise _row_error(path, lineno, name, f"value {k} = {shown} is outside 0..255")
        values.append(value)
    return np.asarray(values, np.uint8)


def _parse_pixels(fields: list[bytes], linenos: list[int], path: Path, name: str) -> np.ndarray:
    fast = _pixels_fast(fields)
    if fast is not None:
        return fast
    return np.stack([_pixels_row(f, path, n, name) for f, n in zip(fields, linenos, strict=True)])


def read_fer2013_csv(path: PathLike) -> dict[str, FaceData]:
    """Read a Kaggle FER2013 CSV (plain or gzip) into one FaceData per Usage value.

    Strict: any malformed row raises DataError naming the file, line and field; blank lines are
    the only thing skipped. Without a Usage column (Kaggle's train.csv) every row is "Training".
    """
    path = Path(path)
    labels: list[int] = []
    usages: list[int] = []
    blocks: list[np.ndarray] = []
    pending: list[bytes] = []
    pending_lines: list[int] = []
    with _open_maybe_gzip(path) as f:
        lines = _numbered_lines(f, path)
        first = next(lines, None)
        if first is None or not first[1].strip():
            raise DataError(f"{path}: line 1: empty (expected the header emotion,pixels,Usage)")
        names, i_label, i_pixels, i_usage = _parse_header(first[1], path)
        for lineno, raw in lines:
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            fields = _split_fields(line, path, lineno)
            if len(fields) != len(names):
                raise DataError(
                    f"{path}: line {lineno}: expected {len(names)} fields ({','.join(names)}), "
                    f"got {len(fields)}")
            labels.append(_parse_label(fields[i_label], path, lineno, names[i_label]))
            usages.append(0 if i_usage is None
                          else _parse_usage(fields[i_usage], path, lineno, names[i_usage]))
            pending.append(fields[i_pixels].strip())
            pending_lines.append(lineno)
            if len(pending) >= _CSV_CHUNK_ROWS:
                blocks.append(_parse_pixels(pending, pending_lines, path, names[i_pixels]))
                pending, pending_lines = [], []
        if pending:
            blocks.append(_parse_pixels(pending, pending_lines, path, names[i_pixels]))
    if not labels:
        raise DataError(f"{path}: no data rows after the header")
    images = torch.from_numpy(np.concatenate(blocks).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE))
    label_t = torch.from_numpy(np.asarray(labels, np.int64))
    usage_t = torch.from_numpy(np.asarray(usages, np.int8))
    out: dict[str, FaceData] = {}
    for code, usage in enumerate(_USAGES):
        mask = usage_t == code
        n = int(mask.sum())
        if n == len(labels):
            out[usage] = FaceData(images, label_t)
        elif n:
            out[usage] = FaceData(images[mask], label_t[mask])
    return out


def _usage_name(split: str) -> str:
    key = split.strip().lower()
    aliases = {"train": "Training", "test": "PublicTest"}
    if key in aliases:
        return aliases[key]
    if key in _USAGE_LOWER:
        return _USAGES[_USAGE_LOWER[key]]
    raise ValueError(f"split {split!r} has no FER2013 Usage value (use one of {_USAGES})")


def write_fer2013_csv(path: PathLike, splits: dict[str, FaceData]) -> None:
    """Write the Kaggle schema, gzip-compressed if the name ends in .gz (reproducibly: mtime 0).

    Split names may be Usage values or "train"/"test".
    """
    path = Path(path)
    table = [str(v).encode() for v in range(256)]
    rows = [b"emotion,pixels,Usage\n"]
    for split, data in splits.items():
        usage = _usage_name(split).encode()
        pixels = data.images.reshape(len(data), _NPIX).cpu().numpy()
        for label, row in zip(data.labels.tolist(), pixels.tolist(), strict=True):
            rows.append(b"%d,%s,%s\n" % (label, b" ".join([table[v] for v in row]), usage))
    body = b"".join(rows)
    with open(path, "wb") as raw:
        if path.name.lower().endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                gz.write(body)
        else:
            raw.write(body)


# --------------------------------------------------------------------------------------------
# Image folders

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


def natural_key(name: str, ignore_case: bool = False) -> tuple[str | int, ...]:
    """Sort key under which Training_9.jpg comes before Training_10.jpg (runs of digits compare
    as numbers), as in FER2013's row order; ignore_case: the rest compares as a file browser
    sorts it, without case."""
    parts = re.split(r"(\d+)", name)
    if ignore_case:
        parts = [part.lower() for part in parts]
    return tuple(int(part) if k % 2 else part for k, part in enumerate(parts))


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


# --------------------------------------------------------------------------------------------
# Dispatch


def _listing(folder: Path, limit: int = 20) -> str:
    names = sorted(p.name for p in folder.iterdir())
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "nothing"


@functools.lru_cache(maxsize=2)
def _read_csv_cached(path: str, mtime_ns: int, size: int) -> dict[str, FaceData]:
    """Train and test splits come from one file: parse it once (keyed on mtime and size)."""
    return read_fer2013_csv(path)


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
    key = split.strip().lower()
    if path.is_dir():
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
    st = path.stat()
    splits = _read_csv_cached(str(path.resolve()), st.st_mtime_ns, st.st_size)
    tried = {"train": ("Training",), "test": ("PublicTest", "PrivateTest")}.get(key)
    if tried is None:
        tried = tuple(u for u in _USAGES if u.lower() == key) or (split,)
    for usage in tried:
        if usage in splits:
            return splits[usage]
    raise DataError(f"{path}: field 'Usage': no rows for split {split!r} "
                    f"(looked for {', '.join(tried)}); present: {', '.join(splits)}")


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
