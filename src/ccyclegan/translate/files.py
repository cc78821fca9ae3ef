"""The files of `ccyclegan translate`: which images a folder holds, what each output is named,
and writing them all or nothing."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ccyclegan.core.checkpoint import atomic_write_bytes
from ccyclegan.core.data import EMOTIONS, natural_key
from ccyclegan.translate.faces import (
    MIN_FACE,
    Picture,
    TranslateError,
    encode_image,
    read_image,
    to_pil,
)
from ccyclegan.translate.inputs import check_intensity, parse_targets

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm",
                  ".pgm", ".pnm")
_WRITABLE = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_OUTPUT_RE = re.compile(r"^(?P<stem>.+)_(?:" + "|".join((*EMOTIONS, "all")) + r")(?:_face\d+)?$")


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


def translate_files(translator, inputs: Sequence[str | os.PathLike[str]],
                    to: str, intensity: float = 1.0, *, out: str | os.PathLike[str] | None = None,
                    crop_only: bool = False, detect: bool = True, min_face: float = MIN_FACE,
                    overwrite: bool = False, keep_going: bool = False,
                    log=None) -> tuple[list[Path], list[str]]:
    """Translate image files/folders with translator (an ExpressionTranslator) and write the
    results; returns (written, errors).

    Outputs: photo_happy.jpg beside the input (or in the folder ``out``; ``out`` with an
    image suffix and a single input is the file itself); ``to="all"``: photo_all.jpg, a strip
    per face; crop_only: photo_happy_face1.png, ... (48x48, or 8 side by side for all).
    Everything is computed before anything is written, so an error writes nothing (unless
    keep_going: then failed inputs are reported and skipped). Never overwrites an input
    unless overwrite.
    """
    targets = parse_targets(to)
    a = check_intensity(intensity)
    tag = "all" if len(targets) > 1 else targets[0]
    files = expand_inputs(inputs)
    out_path = Path(out) if out is not None else None
    out_is_dir = out_path is not None and (
        out_path.is_dir() or len(files) > 1 or any(Path(i).is_dir() for i in inputs)
        or str(out).endswith(("/", os.sep)) or out_path.suffix.lower() not in _WRITABLE)
    input_set = {p.resolve() for p in files}
    planned: dict[Path, Path] = {}
    pending: list[tuple[Path, bytes]] = []
    said: list[tuple[str, list[Path]]] = []  # what to log once the files are written
    errors: list[str] = []
    for src in files:
        try:
            pic = read_image(src)
            result = translator.translate_picture(pic, targets, a, detect, min_face, str(src))
            n_out = len(result.faces) if crop_only else 1
            dests = _plan_outputs(src, tag, n_out, crop_only, out_path, out_is_dir)
            blobs = []
            for k, dest in enumerate(dests):
                if crop_only:
                    img = Image.fromarray(result.crops(k))
                elif len(targets) == 1:
                    img = to_pil(result.picture())
                else:
                    img = to_pil(Picture(result.strip(), None, pic.icc_profile))
                blobs.append((dest, encode_image(img, dest.suffix)))
            for dest, _ in blobs:
                r = dest.resolve()
                if r in input_set and not overwrite:
                    raise TranslateError(f"{dest}: would overwrite an input (pass --overwrite "
                                         "or choose another -o)")
                if r in planned:
                    raise TranslateError(f"{dest}: both {planned[r]} and {src} would write it "
                                         "(use separate -o folders)")
                planned[r] = src
            pending.extend(blobs)
            n = len(result.faces)
            faces = "; ".join(f"at x={f.box.x} y={f.box.y} "
                              f"{f.box.w}x{f.box.h}" for f in result.faces)
            said.append((f"{src}: {n} face{'s' if n != 1 else ''} ({faces})",
                         [d for d, _ in blobs]))
        except TranslateError as e:
            if not keep_going:
                raise
            errors.append(str(e))
    written: list[Path] = []
    for dest, data in pending:
        try:
            atomic_write_bytes(dest, data)
        except OSError as e:
            raise TranslateError(f"{dest}: cannot write ({e.strerror or e}); written before "
                                 f"it: {len(written)} file(s)") from None
        written.append(dest)
    if log is not None:  # only now: a line never claims a file that was not written
        for what, dests in said:
            log(f"{what} -> " + ", ".join(str(d) for d in dests))
    return written, errors
