"""Sample grids: each row a face, columns the input then the face in each of the 7 emotions."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ccyclegan.data import DEBLUR, EMOTIONS, blur_faces, deblur_change, denormalize, normalize
from ccyclegan.models import Generator, one_hot


@torch.no_grad()
def translate_all(G: Generator, faces: torch.Tensor, input_blur: float = 0.0) -> torch.Tensor:
    """uint8 faces [N,1,48,48] -> uint8 [N, 7, 48, 48]: each face (blurred by input_blur
    first) in every emotion."""
    device = next(G.parameters()).device
    x = normalize(blur_faces(faces, input_blur).to(device))
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


def translation_grid(G: Generator, faces: torch.Tensor, labels: torch.Tensor | None = None,
                     input_blur: float = 0.0) -> Image.Image:
    """With input_blur (and labels), the grid shows what `translate` makes of each face:
    G's change on the blurred face, deblurred, added to the sharp face."""
    was_training = G.training
    G.eval()
    try:
        out = translate_all(G, faces, input_blur)
        if input_blur and labels is not None:
            out = residual(faces, out[:, :, None], labels, input_blur, DEBLUR)[:, :, 0]
        return grid_image(faces, out, labels)
    finally:
        G.train(was_training)


def residual(faces: torch.Tensor, raw: torch.Tensor, src_labels: torch.Tensor,
             sigma: float = 0.0, deblur: float = 0.0) -> torch.Tensor:
    """x + d(G(x'|t) - G(x'|y_x)) for every column t of raw ([N, 7, 1, H, W], uint8): the
    model's change added to the face itself, as `ccyclegan translate` does. Used when G saw
    copies x' of sharp faces blurred by sigma, whose raw outputs are blurred. d is the identity,
    or with deblur > 0 the Wiener inverse of that blur (data.deblur_change), as in translate."""
    base = raw[torch.arange(len(raw)), src_labels].float()[:, None]
    change = raw.float() - base
    if sigma > 0 and deblur > 0:
        change = torch.from_numpy(deblur_change(change.numpy(), sigma, deblur))
    out = faces.float()[:, None] + change
    return out.round().clamp(0, 255).to(torch.uint8)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()
