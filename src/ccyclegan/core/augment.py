"""Differentiable augmentation of everything D sees (DiffAugment, Zhao et al., NeurIPS 2020).

Why: D (and its emotion head D_cl) can be fooled by small, pixel-exact patterns that G learns
to paint. Shifting and cutting every real and translated face the same random way before D
reads it, in both the D and the G update, takes those patterns away from both; because the
ops are differentiable, G still gets gradients through them. The policies are the paper's,
for grey faces: brightness and contrast (no saturation), translation by up to 1/8 of the
side, and cutout of a square of half the side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' -> (). Raises ValueError on an
    unknown name."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ValueError(f"unknown augmentation {bad[0]!r} (choose from {', '.join(POLICIES)})")
    return names


def diff_augment(x: torch.Tensor, policy: str | tuple[str, ...],
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a batch [N, C, H, W] of faces in [-1, 1], each face with its own random draw.
    An empty policy returns x itself."""
    names = parse_policy(policy) if isinstance(policy, str) else policy
    for name in names:
        x = _OPS[name](x, generator)
    return x


def _rand(n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # drawn on the CPU so that a seeded generator gives the same faces on every device
    return torch.rand(n, 1, 1, 1, generator=generator).to(x.device, x.dtype)


def _color(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    x = x + (_rand(len(x), x, g) - 0.5)  # brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(len(x), x, g) + 0.5) + mean  # contrast


def _translation(x: torch.Tensor, g: torch.Generator | None, ratio: float = 0.125
                 ) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), generator=g).to(x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), generator=g).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + dy + sh  # in padded coordinates
    cols = torch.arange(w, device=x.device).view(1, 1, w) + dx + sw
    padded = F.pad(x, (sw, sw, sh, sh))  # zeros: mid-grey in [-1, 1]
    idx = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, g: torch.Generator | None, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=g).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=g).to(x.device)
    r = torch.arange(h, device=x.device).view(1, h, 1)
    c = torch.arange(w, device=x.device).view(1, 1, w)
    dr, dc = r - cy + ch // 2, c - cx + cw // 2  # position inside the square, if in it
    inside = (dr >= 0) & (dr < ch) & (dc >= 0) & (dc < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}
