"""Sample grids: each row a face, columns the input then the face in each of the 7 emotions."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ccyclegan.core.data import EMOTIONS, denormalize, normalize
from ccyclegan.core.models import Generator, one_hot


@torch.no_grad()
def translate_all(G: Generator, faces: torch.Tensor) -> torch.Tensor:
    """uint8 faces [N,1,48,48] -> uint8 [N, 7, 48, 48]: each face in every emotion."""
    device = next(G.parameters()).device
    x = normalize(faces.to(device))
    feats = G.encode(x)
    out = []
    for k in range(len(EMOTIONS)):
        c = one_hot(torch.full((x.shape[0],), k, device=device, dtype=torch.long))
        out.append(denormalize(G.decode(feats, c).float())[:, 0])
    return torch.stack(out, 1).cpu()


def grid_image(faces: torch.Tensor, translated: torch.Tensor, labels: torch.Tensor | None = None,
               scale: int = 2) -> Image.Image:
    """Lay out the input column and the 7 emotion columns with a header row of names."""
    n = faces.shape[0]
    cell = 48 * scale
    pad = 4
    header = 18
    cols = ["input", *EMOTIONS]
    w = len(cols) * (cell + pad) + pad
    h = header + n * (cell + pad) + pad
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    font = _font(12)
    for j, name in enumerate(cols):
        x0 = pad + j * (cell + pad)
        tw = draw.textlength(name, font=font)
        draw.text((x0 + (cell - tw) / 2, 2), name, fill=0, font=font)
    for i in range(n):
        row = [faces[i, 0], *translated[i]]
        for j, tile in enumerate(row):
            t = Image.fromarray(np.asarray(tile, dtype=np.uint8)).resize((cell, cell),
                                                                        Image.Resampling.NEAREST)
            img.paste(t, (pad + j * (cell + pad), header + pad + i * (cell + pad)))
        if labels is not None:  # mark the source emotion's column
            j = 1 + int(labels[i])
            x0, y0 = pad + j * (cell + pad) - 2, header + pad + i * (cell + pad) - 2
            draw.rectangle([x0, y0, x0 + cell + 3, y0 + cell + 3], outline=0, width=1)
    return img


def translation_grid(G: Generator, faces: torch.Tensor,
                     labels: torch.Tensor | None = None) -> Image.Image:
    was_training = G.training
    G.eval()
    try:
        return grid_image(faces, translate_all(G, faces), labels)
    finally:
        G.train(was_training)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()
