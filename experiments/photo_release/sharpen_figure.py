"""The paint's unsharp mask by eye: a face's lower half at the photo's own size, one row per
amount (paste.SHARPEN, as translate pastes with it), the input then each target.

    python experiments/photo_release/sharpen_figure.py docs/img/photos/grace_hopper.jpg \
        --targets fear,surprise,happy --sharpen 0 1 2 -o experiments/photo_release/sharpen.jpg

--face K: the K-th face the translator finds (default: the largest).
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from ccyclegan.translate import ExpressionTranslator, paste


def rows(photo: str, face_index: int | None, targets: list[str], amounts: list[float]
         ) -> np.ndarray:
    """The translator's own photos (TranslationResult.image) with paste.SHARPEN set to each
    amount in turn."""
    img = np.asarray(Image.open(photo).convert("RGB"))
    tr = ExpressionTranslator.load()
    out, before = [], paste.SHARPEN
    try:
        for k in amounts:
            paste.SHARPEN = k
            result = tr.translate_faces(img, to="all")  # a new result: images are cached
            face = (max(result.faces, key=lambda f: f.frame.w) if face_index is None
                    else result.faces[face_index])
            f = face.frame
            box = (f.x + f.w // 8, f.y + f.h // 2, f.x + 7 * f.w // 8, f.y + f.h)
            tiles = [img] + [result.image(t) for t in targets]
            out.append(np.concatenate([np.asarray(Image.fromarray(a).crop(box)) for a in tiles],
                                      1))
    finally:
        paste.SHARPEN = before
    return np.concatenate(out, 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("photo")
    p.add_argument("--face", type=int, default=None)
    p.add_argument("--targets", default="fear,surprise,happy")
    p.add_argument("--sharpen", type=float, nargs="+", default=[0.0, 1.0])
    p.add_argument("-o", "--out", default="experiments/photo_release/sharpen.jpg")
    a = p.parse_args()
    figure = rows(a.photo, a.face, a.targets.split(","), a.sharpen)
    Image.fromarray(figure).save(a.out, quality=92)
    print(f"wrote {a.out} {figure.shape[1]}x{figure.shape[0]}: rows sharpen {a.sharpen}, "
          f"columns input, {a.targets}")


if __name__ == "__main__":
    main()
