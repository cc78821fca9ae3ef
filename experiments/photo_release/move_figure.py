"""The figure of the paste's move against paint alone, on the large faces where they differ.

    python experiments/photo_release/move_figure.py [--photos ../shared/data/photos]
        [-o experiments/photo_release/move_vs_paint.jpg] [--face PHOTO:K ...] [--parts]

For each photo's largest face (or each --face: the K-th face the translator finds in PHOTO):
the lower two thirds of its frame at the photo's own resolution, the input then angry, sad,
surprise and neutral; the first row painted only (paste.MOVE off), the second with the edit
applied as a move where a move explains it (the default). --parts: the first row moved
wherever a move explains the edit (paste.PARTS off), the second moved on the mouth, eyes and
brows only (the default since).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from ccyclegan.translate import paste
from ccyclegan.translate.api import ExpressionTranslator

PHOTOS = ("Tom_Cruise_avp_2014_4.jpg", "bald_guys.jpg")
TARGETS = ("angry", "sad", "surprise", "neutral")
HEIGHT = 300  # each row scaled to this height (the Tom Cruise face is shown near 1:1)


def rows(tr: ExpressionTranslator, path: Path, k: int | None = None,
         setting: str = "MOVE") -> list[np.ndarray]:
    out = []
    for on in (False, True):
        setattr(paste, setting, on)
        result = tr.translate_faces(path, to="all")
        face = max(result.faces, key=lambda f: f.frame.w) if k is None else result.faces[k]
        f = face.frame
        h, w = result.original.pixels.shape[:2]
        y0, y1 = max(f.y + f.h // 3, 0), min(f.y + f.h, h)
        x0, x1 = max(f.x + f.w // 8, 0), min(f.x + f.w - f.w // 8, w)
        tiles = [result.original.pixels] + [result.image(e) for e in TARGETS]
        row = np.concatenate([t[y0:y1, x0:x1] for t in tiles], axis=1)
        img = Image.fromarray(row)
        out.append(np.asarray(img.resize((round(img.width * HEIGHT / img.height), HEIGHT),
                                         Image.Resampling.LANCZOS)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", default="../shared/data/photos")
    p.add_argument("-o", "--out", default=str(Path(__file__).with_name("move_vs_paint.jpg")))
    p.add_argument("--face", action="append", metavar="PHOTO:K",
                   help="the K-th face found in PHOTO instead of each photo's largest")
    p.add_argument("--parts", action="store_true",
                   help="compare the move everywhere with the move on parts (paste.PARTS)")
    a = p.parse_args()
    faces = [(name, None) for name in PHOTOS]
    if a.face:
        faces = [(spec.rpartition(":")[0], int(spec.rpartition(":")[2])) for spec in a.face]
    tr = ExpressionTranslator.load()
    setting = "PARTS" if a.parts else "MOVE"
    before = getattr(paste, setting)
    try:
        all_rows = [r for name, k in faces
                    for r in rows(tr, Path(a.photos) / name, k, setting)]
    finally:
        setattr(paste, setting, before)
    width = max(r.shape[1] for r in all_rows)
    page = np.full((sum(r.shape[0] + 6 for r in all_rows), width, 3), 255, np.uint8)
    y = 0
    for r in all_rows:
        page[y:y + r.shape[0], :r.shape[1]] = r
        y += r.shape[0] + 6
    Image.fromarray(page).save(a.out, quality=90)
    first, second = ("moved anywhere", "on parts") if a.parts else ("painted only", "moved")
    print(f"wrote {a.out}: per photo, {first} then {second}; input, {', '.join(TARGETS)}")


if __name__ == "__main__":
    main()
