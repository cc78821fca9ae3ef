"""The docs' figures, each from one command (tests/test_figures.py runs them on a tiny model).

    python docs/figures.py photos [--checkpoint RUN] [-o docs/img/photos_all.jpg]
        the README's figure: three redistributable photos (scikit-image's astronaut, Grace
        Hopper, Marie Curie), the largest face of each in all 7 emotions, cut from the
        translated photo at its own resolution (no resizing), and beside each row the 48x48
        crops the model saw and made, enlarged 2x
    python docs/figures.py faces PHOTO [PHOTO ...] [--checkpoint RUN] [-o faces.jpg]
        the photo benchmark's figure: every face of the photos, the same layout
    --paint-only: the edit painted over the photo, never moved (paste.MOVE off), to compare
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ccyclegan.core.data import EMOTIONS
from ccyclegan.translate import paste
from ccyclegan.translate.api import ExpressionTranslator
from ccyclegan.translate.faces import read_image

PHOTOS = Path(__file__).resolve().parent / "img" / "photos"
GAP = 6
HEADER = 22


def readme_photos() -> list[np.ndarray]:
    from skimage.data import astronaut

    return [astronaut(), np.asarray(Image.open(PHOTOS / "grace_hopper.jpg").convert("RGB")),
            np.asarray(Image.open(PHOTOS / "curie.png").convert("RGB"))]


def _rgb(a: np.ndarray) -> np.ndarray:
    return a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2)


def face_rows(tr: ExpressionTranslator, photo: np.ndarray, which: int | None = 0,
              crop_zoom: int = 2) -> list[tuple[np.ndarray, int]]:
    """(row, column width) pairs of one photo: for each face (or only face `which`), its
    region in the input and in each of the 7 translated photos at the photo's own resolution,
    then the 48x48 crops the model saw and made (enlarged crop_zoom times)."""
    result = tr.translate_faces(photo, to="all")
    faces = range(len(result.faces)) if which is None else [which]
    rows = []
    for i in faces:
        f = result.faces[i].frame
        h, w = photo.shape[:2]
        x0, y0, x1, y1 = max(f.x, 0), max(f.y, 0), min(f.x + f.w, w), min(f.y + f.h, h)
        tiles = [_rgb(photo[y0:y1, x0:x1])]
        tiles += [_rgb(result.image(e)[y0:y1, x0:x1]) for e in EMOTIONS]
        side = 48 * crop_zoom
        crops = [np.asarray(Image.fromarray(c).resize((side, side), Image.Resampling.NEAREST))
                 for c in np.split(result.crops(i), 8, axis=1)]
        rows.append((_join(tiles), x1 - x0 + GAP))
        rows.append((_join([_rgb(c) for c in crops]), side + GAP))
    return rows


def _join(tiles: list[np.ndarray]) -> np.ndarray:
    hgt = max(t.shape[0] for t in tiles)
    out = []
    for t in tiles:
        pad = np.full((hgt, t.shape[1] + GAP, 3), 255, np.uint8)
        pad[:t.shape[0], :t.shape[1]] = t
        out.append(pad)
    return np.concatenate(out, axis=1)


def sheet(rows: list[tuple[np.ndarray, int]]) -> Image.Image:
    """The rows on a white page, each photo's row under its column names (input, then the 7
    emotions); the crop rows under it need none."""
    width = max(r.shape[1] for r, _ in rows)
    labelled = rows[::2]
    height = sum(r.shape[0] + GAP for r, _ in rows) + HEADER * len(labelled)
    fig = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(fig)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    y = 0
    for k, (r, col) in enumerate(rows):
        if k % 2 == 0:
            for j, name in enumerate(["input", *EMOTIONS]):
                draw.text((j * col + 2, y + 3), name, fill="black", font=font)
            y += HEADER
        fig.paste(Image.fromarray(np.ascontiguousarray(r)), (0, y))
        y += r.shape[0] + GAP
    return fig


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("photos", "faces"))
    p.add_argument("photos", nargs="*", help="faces: the photos")
    p.add_argument("--checkpoint", help="generator (default: the bundled model)")
    p.add_argument("-o", "--out")
    p.add_argument("--paint-only", action="store_true")
    a = p.parse_args(argv)
    tr = ExpressionTranslator.load(a.checkpoint)
    move, paste.MOVE = paste.MOVE, paste.MOVE and not a.paint_only
    try:
        if a.what == "photos":
            rows = [r for photo in readme_photos() for r in face_rows(tr, photo)]
            out = a.out or str(Path(__file__).resolve().parent / "img" / "photos_all.jpg")
        else:
            rows = [r for path in a.photos for r in face_rows(tr, read_image(path).pixels, None)]
            out = a.out or "faces.jpg"
    finally:
        paste.MOVE = move
    fig = sheet(rows)
    fig.save(out, quality=92)
    print(f"wrote {out} ({fig.width}x{fig.height})")


if __name__ == "__main__":
    main()
