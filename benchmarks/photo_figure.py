"""The README's photo figure: three ordinary photos, each face in all 7 emotions, at the photo's
own resolution (what `ccyclegan translate photo.jpg --to all` writes, one strip per photo).

    python benchmarks/photo_figure.py [--checkpoint RUN] [-o docs/img/photos_all.jpg]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ccyclegan.data import EMOTIONS
from ccyclegan.translate import ExpressionTranslator

PHOTOS = Path(__file__).resolve().parents[1] / "docs" / "img" / "photos"


def photos() -> dict[str, np.ndarray]:
    from skimage.data import astronaut

    return {"astronaut": astronaut(),
            "grace_hopper": np.asarray(Image.open(PHOTOS / "grace_hopper.jpg").convert("RGB")),
            "curie": np.asarray(Image.open(PHOTOS / "curie.png").convert("RGB"))}


def figure(tr: ExpressionTranslator, tile: int = 192, intensity: float = 1.0) -> Image.Image:
    rows = []
    for image in photos().values():
        result = tr.translate_faces(image, to="all", intensity=intensity)
        rows.append(result.strip(tile)[:tile])  # the first (largest) face
    header = 22
    fig = Image.new("RGB", (rows[0].shape[1], header + tile * len(rows)), "white")
    draw = ImageDraw.Draw(fig)
    try:
        font = ImageFont.load_default(size=16)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for j, name in enumerate(["input", *EMOTIONS]):
        w = draw.textlength(name, font=font)
        draw.text((j * tile + (tile - w) / 2, 2), name, fill="black", font=font)
    for i, r in enumerate(rows):
        fig.paste(Image.fromarray(np.ascontiguousarray(r)), (0, header + i * tile))
    return fig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="generator (default: the bundled model)")
    p.add_argument("-o", "--out", default="docs/img/photos_all.jpg")
    p.add_argument("--tile", type=int, default=192)
    p.add_argument("--intensity", type=float, default=1.0)
    a = p.parse_args()
    fig = figure(ExpressionTranslator.load(a.checkpoint), a.tile, a.intensity)
    fig.save(a.out, quality=92)
    print(f"wrote {a.out} ({fig.width}x{fig.height})")


if __name__ == "__main__":
    main()
