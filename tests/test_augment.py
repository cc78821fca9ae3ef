"""DiffAugment of D's inputs: each op does what it says, per face, and lets gradients through."""

import pytest
import torch

from ccyclegan.core.augment import diff_augment, parse_policy
from ccyclegan.core.config import Config, ConfigError


def faces(n=6, seed=0):
    return torch.rand(n, 1, 48, 48, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_empty_policy_is_the_identity():
    x = faces()
    assert diff_augment(x, "") is x
    assert parse_policy(" translation , cutout ") == ("translation", "cutout")


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="'blur'"):
        parse_policy("translation,blur")
    with pytest.raises(ConfigError, match="d_augment"):
        Config(d_augment="flip")


def test_translation_shifts_each_face_and_pads_with_grey():
    x = faces(32)
    y = diff_augment(x, "translation", torch.Generator().manual_seed(0))
    shifts = set()
    for xi, yi in zip(x[:, 0], y[:, 0], strict=True):
        found = [(dy, dx) for dy in range(-6, 7) for dx in range(-6, 7)
                 if torch.equal(yi[max(0, -dy):48 - max(0, dy), max(0, -dx):48 - max(0, dx)],
                                xi[max(0, dy):48 + min(0, dy), max(0, dx):48 + min(0, dx)])]
        assert len(found) == 1, found
        dy, dx = found[0]
        shifts.add((dy, dx))
        pad = torch.ones_like(yi, dtype=torch.bool)
        pad[max(0, -dy):48 - max(0, dy), max(0, -dx):48 - max(0, dx)] = False
        assert (yi[pad] == 0).all()  # zero = mid-grey on the [-1, 1] scale
    assert len(shifts) > 10  # each face gets its own shift


def test_cutout_blanks_one_square_of_at_most_half_the_side():
    x = faces(32) * 0.5 + 0.75  # no zeros in the input
    y = diff_augment(x, "cutout", torch.Generator().manual_seed(0))
    for yi in y[:, 0]:
        rows, cols = torch.nonzero(yi == 0, as_tuple=True)
        assert len(rows) > 0
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert h <= 24 and w <= 24 and len(rows) == h * w  # one solid rectangle
    kept = y != 0
    assert torch.equal(y[kept], x[kept])


def test_color_changes_brightness_and_contrast_per_face():
    x = faces(8)
    y = diff_augment(x, "color", torch.Generator().manual_seed(0))
    d_mean = (y.mean((1, 2, 3)) - x.mean((1, 2, 3))).abs()
    ratio = y.std((1, 2, 3)) / x.std((1, 2, 3))
    assert (d_mean <= 0.5 + 1e-5).all() and d_mean.std() > 0
    assert ((ratio >= 0.5 - 1e-5) & (ratio <= 1.5 + 1e-5)).all() and ratio.std() > 0


def test_seeded_and_differentiable():
    x = faces().requires_grad_()
    p = "color,translation,cutout"
    a = diff_augment(x, p, torch.Generator().manual_seed(3))
    b = diff_augment(x, p, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    a.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
