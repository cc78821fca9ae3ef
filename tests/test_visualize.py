"""Sample grids: layout, and with input_blur the output of `translate` (the source column
is the input itself)."""

from __future__ import annotations

import numpy as np
import torch

from ccyclegan.data import synthetic_faces
from ccyclegan.models import Generator
from ccyclegan.visualize import grid_image, translate_all, translation_grid


def test_grid_layout_and_input_blur_residual():
    torch.manual_seed(0)
    G = Generator(8).eval()
    faces = synthetic_faces(1, seed=2)
    x, y = faces.images[:3], faces.labels[:3]
    raw = translate_all(G, x)
    assert raw.shape == (3, 7, 48, 48) and raw.dtype == torch.uint8
    img = grid_image(x, raw, y)
    assert img.size[0] > 8 * 96 and img.size[1] > 3 * 96  # 8 columns, 3 rows of 2x tiles
    plain = np.asarray(translation_grid(G, x, y))
    blurred = np.asarray(translation_grid(G, x, y, input_blur=2.0))
    assert plain.shape == blurred.shape and not np.array_equal(plain, blurred)
    # with input_blur the source column shows the input face, pixel for pixel
    cell, pad, header = 96, 4, 18
    for i in range(3):
        top = header + pad + i * (cell + pad)
        left_in, left_src = pad, pad + (1 + int(y[i])) * (cell + pad)
        tile_in = blurred[top:top + cell, left_in:left_in + cell]
        tile_src = blurred[top:top + cell, left_src:left_src + cell]
        assert np.array_equal(tile_in, tile_src)
