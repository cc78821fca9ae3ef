"""The 48x48 edits of several generators side by side, enlarged without smoothing, so that
texture a loss adds (a lattice, a smear) shows as it is: one block per model, a row per
PublicTest face, the input then the seven targets.

    python experiments/one_pass/edits_figure.py --data ../shared/data/fer2013/fer2013.csv.gz \
        --faces 0,5,17,33 --model src/ccyclegan/weights/ccyclegan_fer2013.safetensors \
        --model runs/sharp/d05/generator.safetensors -o edits.jpg
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from ccyclegan.core.data import load_split
from ccyclegan.core.generator_files import load_generator
from ccyclegan.core.visualize import translate_all


def block(path: str, faces: torch.Tensor) -> np.ndarray:
    """uint8 [faces x 48, 8 x 48]: the input and its seven edits by the generator at path."""
    edits = translate_all(load_generator(path)[0].float().eval(), faces).numpy()
    rows = zip(faces.numpy(), edits, strict=True)
    return np.concatenate([np.concatenate([f[0], *e], 1) for f, e in rows], 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--faces", default="0,5,17,33", help="PublicTest indices")
    p.add_argument("--model", action="append", required=True)
    p.add_argument("--zoom", type=int, default=3)
    p.add_argument("-o", "--out", required=True)
    args = p.parse_args()
    idx = [int(i) for i in args.faces.split(",")]
    faces = load_split(args.data, "test").images[idx]
    gap = np.full((4, 8 * 48), 255, np.uint8)
    parts = [b for path in args.model for b in (block(path, faces), gap)][:-1]
    img = np.concatenate(parts, 0).astype(np.uint8)
    h, w = img.shape
    Image.fromarray(img).resize((w * args.zoom, h * args.zoom), Image.NEAREST).save(args.out)
    print(f"wrote {args.out} ({w * args.zoom}x{h * args.zoom})")


if __name__ == "__main__":
    main()
