"""The paint's unsharp mask by eye: a face's lower half at the photo's own size, one row per
amount (paste.paste_edit's sharpen), the input then each target.

    python experiments/photo_release/sharpen_figure.py docs/img/photos/grace_hopper.jpg \
        --targets fear,surprise,happy --sharpen 0 1 2 -o experiments/photo_release/sharpen.jpg

--face K: the K-th face the translator finds (default: the largest).
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from ccyclegan.translate import ExpressionTranslator
from ccyclegan.translate.faces import FACE_SIZE
from ccyclegan.translate.paste import border_fade, flow_of_edit, paste_edit


def rows(photo: str, face_index: int | None, targets: list[str], amounts: list[float]
         ) -> np.ndarray:
    img = np.asarray(Image.open(photo).convert("RGB"))
    result = ExpressionTranslator.load().translate_faces(img, to="all")
    face = (max(result.faces, key=lambda f: f.frame.w) if face_index is None
            else result.faces[face_index])
    f = face.frame
    box = (f.x + f.w // 8, f.y + f.h // 2, f.x + 7 * f.w // 8, f.y + f.h)
    out = []
    for k in amounts:
        tiles = [img]
        for t in targets:
            pixels = img.copy()
            paste_edit(pixels, f, flow_of_edit(face.before, face.edits[t]),
                       border_fade(FACE_SIZE), sharpen=k)
            tiles.append(pixels)
        out.append(np.concatenate([np.asarray(Image.fromarray(a).crop(box)) for a in tiles], 1))
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
