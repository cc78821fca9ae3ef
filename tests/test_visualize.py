"""Sample grids: one row per face, the input then the face in each of the 7 emotions."""

from __future__ import annotations

import numpy as np
import torch

from ccyclegan.core.models import Generator
from ccyclegan.core.synthetic import synthetic_faces
from ccyclegan.core.visualize import grid_image, translate_all, translation_grid


def test_grid_layout():
    torch.manual_seed(0)
    G = Generator(8).eval()
    faces = synthetic_faces(1, seed=2)
    x, y = faces.images[:3], faces.labels[:3]
    raw = translate_all(G, x)
    assert raw.shape == (3, 7, 48, 48) and raw.dtype == torch.uint8
    img = grid_image(x, raw, y)
    assert img.size[0] > 8 * 96 and img.size[1] > 3 * 96  # 8 columns, 3 rows of 2x tiles
    # the first column is the input, pixel for pixel (2x nearest)
    cell, pad, header = 96, 4, 18
    grid = np.asarray(img)
    for i in range(3):
        top = header + pad + i * (cell + pad)
        tile = grid[top:top + cell, pad:pad + cell]
        assert np.array_equal(tile[::2, ::2], x[i, 0].numpy())
    G.train()
    assert np.array_equal(np.asarray(translation_grid(G, x, y)), grid)
    assert G.training  # the caller's mode is restored
