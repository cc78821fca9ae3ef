"""The files of `ccyclegan translate`: which images a folder holds, what each output is named
and holds, and writing them all or nothing. Knows nothing of the model: api.py translates."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ccyclegan.core.checkpoint import atomic_write_bytes
from ccyclegan.core.data import EMOTIONS, natural_key
from ccyclegan.translate.faces import (
    Picture,
    TranslateError,
    encode_image,
    to_pil,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm",
                  ".pgm", ".pnm")
_WRITABLE = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_NAME = "(?:" + "|".join(EMOTIONS) + ")"
_OUTPUT_RE = re.compile(rf"^(?P<stem>.+)_(?:all|{_NAME}(?:-{_NAME})*)(?:_face\d+)?$")


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; folders -> their image files (not recursive, natural order), skipping
    this command's own earlier outputs (x_happy.jpg beside an x.jpg)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted((f for f in p.iterdir()
                            if f.is_file() and not f.name.startswith(".")
                            and f.suffix.lower() in IMAGE_SUFFIXES),
                           key=lambda f: natural_key(f.name, ignore_case=True))
            stems = {f.stem for f in files}
            files = [f for f in files
                     if not ((m := _OUTPUT_RE.match(f.stem)) and m["stem"] in stems)]
            if not files:
                raise TranslateError(f"{p}: no image files in this folder "
                                     f"({', '.join(IMAGE_SUFFIXES)})")
            out.extend(files)
        elif p.exists():
            out.append(p)
        else:
            raise TranslateError(f"{p}: no such file or folder")
    return out


def _out_suffix(path: Path) -> str:
    s = path.suffix.lower()
    return path.suffix if s in _WRITABLE else ".png"


def _plan_outputs(src: Path, tag: str, n_out: int, crop_only: bool, out: Path | None,
                  out_is_dir: bool) -> list[Path]:
    if out is not None and not out_is_dir:  # -o FILE, one input
        if n_out == 1:
            return [out]
        return [out.with_name(f"{out.stem}_face{k + 1}{out.suffix}") for k in range(n_out)]
    folder = out if out is not None else src.parent
    if crop_only:
        return [folder / f"{src.stem}_{tag}_face{k + 1}.png" for k in range(n_out)]
    return [folder / f"{src.stem}_{tag}{_out_suffix(src)}"]


def output_tag(targets: Sequence[str]) -> str:
    """The outputs' name part for these targets: photo_sad.jpg, photo_sad-angry.jpg,
    photo_all.jpg (all 7)."""
    return "all" if tuple(targets) == EMOTIONS else "-".join(targets)


def outputs(src: Path, result, targets: tuple[str, ...], pic: Picture, crop_only: bool,
            out: Path | None, out_is_dir: bool) -> list[tuple[Path, bytes]]:
    """The encoded files of one translated image (a TranslationResult): its destination
    paths and bytes, nothing written yet."""
    tag = output_tag(targets)
    n_out = len(result.faces) if crop_only else 1
    blobs = []
    for k, dest in enumerate(_plan_outputs(src, tag, n_out, crop_only, out, out_is_dir)):
        if crop_only:
            img = Image.fromarray(result.crops(k))
        elif len(targets) == 1:
            img = to_pil(result.picture())
        else:
            img = to_pil(Picture(result.strip(), None, pic.icc_profile))
        blobs.append((dest, encode_image(img, dest.suffix)))
    return blobs


def output_is_folder(inputs: Sequence[str | os.PathLike[str]], files: list[Path],
                     out: Path | None) -> bool:
    """Whether -o names a folder (several inputs, a folder input, a trailing slash or no image
    suffix) rather than the one output file."""
    return out is not None and (
        out.is_dir() or len(files) > 1 or any(Path(i).is_dir() for i in inputs)
        or str(out).endswith(("/", os.sep)) or out.suffix.lower() not in _WRITABLE)


class Planned:
    """The outputs of a run, checked before anything is written: none replaces an input
    (unless overwrite) and no two inputs write the same file."""

    def __init__(self, files: list[Path], overwrite: bool):
        self.inputs = {p.resolve() for p in files}
        self.overwrite = overwrite
        self.by_dest: dict[Path, Path] = {}
        self.pending: list[tuple[Path, bytes]] = []

    def add(self, src: Path, blobs: list[tuple[Path, bytes]]) -> None:
        for dest, _ in blobs:
            r = dest.resolve()
            if r in self.inputs and not self.overwrite:
                raise TranslateError(f"{dest}: would overwrite an input (pass --overwrite "
                                     "or choose another -o)")
            if r in self.by_dest:
                raise TranslateError(f"{dest}: both {self.by_dest[r]} and {src} would write it "
                                     "(use separate -o folders)")
        for dest, _ in blobs:
            self.by_dest[dest.resolve()] = src
        self.pending.extend(blobs)

    def write(self) -> list[Path]:
        """Write every planned file (atomically each); the paths written."""
        written: list[Path] = []
        for dest, data in self.pending:
            try:
                atomic_write_bytes(dest, data)
            except OSError as e:
                raise TranslateError(f"{dest}: cannot write ({e.strerror or e}); written "
                                     f"before it: {len(written)} file(s)") from None
            written.append(dest)
        return written
