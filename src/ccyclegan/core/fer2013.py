"""The Kaggle FER2013 CSV (emotion,pixels[,Usage]; plain or gzip) in and out.

Strict and fast: a numpy pass per chunk of rows for the canonical form, and a per-row pass that
names the file, line and field of anything malformed.
"""

from __future__ import annotations

import csv
import functools
import gzip
import warnings
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import torch

from ccyclegan.core.faces_data import IMAGE_SIZE, NUM_CLASSES, DataError, FaceData, PathLike

__all__ = ["load_csv_split", "read_fer2013_csv", "write_fer2013_csv"]

_NPIX = IMAGE_SIZE * IMAGE_SIZE
_CSV_CHUNK_ROWS = 4096  # rows parsed per numpy call: bounds memory, keeps the fast path fast
_USAGES = ("Training", "PublicTest", "PrivateTest")
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


@functools.lru_cache(maxsize=2)
def _read_csv_cached(path: str, mtime_ns: int, size: int) -> dict[str, FaceData]:
    """Train and test splits come from one file: parse it once (keyed on mtime and size)."""
    return read_fer2013_csv(path)


def load_csv_split(path: Path, split: str) -> FaceData:
    """One split of a FER2013 CSV (data.load_split's CSV half): "train" is Training, "test"
    PublicTest (PrivateTest if that is all there is), or a Usage value by name."""
    key = split.strip().lower()
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
