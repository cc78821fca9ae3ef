"""Small figures drawn with Pillow (no matplotlib in the base install): confusion matrices
and bar charts for evaluation reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _shade(v: float) -> tuple[int, int, int]:
    """White (0) to dark blue (1)."""
    v = float(min(max(v, 0.0), 1.0))
    lo, hi = np.array([255, 255, 255]), np.array([8, 48, 107])
    return tuple(int(round(c)) for c in lo + (hi - lo) * v)


def confusion_image(matrix: np.ndarray | Sequence[Sequence[float]], row_labels: Sequence[str],
                    col_labels: Sequence[str], title: str = "",
                    row_axis: str = "true", col_axis: str = "predicted",
                    cell: int = 56) -> Image.Image:
    """A confusion matrix of counts: each cell shaded and labelled by its share of the row
    (in %), with the row totals on the right."""
    m = np.asarray(matrix, dtype=np.float64)
    rows, cols = m.shape
    totals = m.sum(1)
    share = np.divide(m, totals[:, None], out=np.zeros_like(m), where=totals[:, None] > 0)
    font, small = _font(13), _font(11)
    left, top, right, bottom = 90, 58 if title else 40, 60, 30
    w, h = left + cols * cell + right, top + rows * cell + bottom
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    if title:
        d.text((8, 6), title, fill="black", font=font)
    d.text((8, top - 36), f"rows: {row_axis}, columns: {col_axis}", fill="black", font=small)
    for j, name in enumerate(col_labels):
        tw = d.textlength(name, font=small)
        d.text((left + j * cell + (cell - tw) / 2, top - 18), name, fill="black", font=small)
    for i, name in enumerate(row_labels):
        y0 = top + i * cell
        d.text((4, y0 + cell / 2 - 7), name, fill="black", font=small)
        for j in range(cols):
            x0 = left + j * cell
            v = share[i, j]
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=_shade(v), outline=(200,) * 3)
            text = f"{100 * v:.0f}%" if totals[i] > 0 else "-"
            tw = d.textlength(text, font=font)
            d.text((x0 + (cell - tw) / 2, y0 + cell / 2 - 8), text,
                   fill="white" if v > 0.5 else "black", font=font)
            if i == j:
                d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], outline="black", width=2)
        d.text((left + cols * cell + 6, y0 + cell / 2 - 7), f"n={int(totals[i])}", fill="black",
               font=small)
    return img


def bar_chart(labels: Sequence[str], values: Sequence[float | None], title: str = "",
              ylabel: str = "", floor: float | None = None, width: int = 640) -> Image.Image:
    """Horizontal bars, one per label (None draws no bar and says "n/a"); an optional floor
    (e.g. real-vs-real) is drawn as a dashed vertical line."""
    font, small = _font(13), _font(11)
    row, top, left = 22, 50 if title else 28, max([60] + [8 + 7 * len(s) for s in labels])
    right = 90
    h = top + row * len(labels) + 24
    img = Image.new("RGB", (width, h), "white")
    d = ImageDraw.Draw(img)
    if title:
        d.text((8, 6), title, fill="black", font=font)
    if ylabel:
        d.text((left, top - 18), ylabel, fill="black", font=small)
    finite = [v for v in values if v is not None and np.isfinite(v)]
    vmax = max(finite + ([floor] if floor is not None else []) + [1e-12])
    span = width - left - right
    for i, (name, v) in enumerate(zip(labels, values, strict=True)):
        y0 = top + i * row
        d.text((4, y0 + 4), name, fill="black", font=small)
        if v is None or not np.isfinite(v):
            d.text((left + 4, y0 + 4), "n/a", fill="gray", font=small)
            continue
        x1 = left + span * max(v, 0.0) / vmax
        d.rectangle([left, y0 + 3, x1, y0 + row - 3], fill=(70, 110, 170))
        d.text((x1 + 4, y0 + 4), f"{v:.4g}", fill="black", font=small)
    if floor is not None and np.isfinite(floor):
        x = left + span * floor / vmax
        for y in range(top, top + row * len(labels), 6):
            d.line([x, y, x, y + 3], fill=(200, 40, 40), width=1)
        d.text((x + 3, top + row * len(labels) + 4), f"floor {floor:.4g}", fill=(200, 40, 40),
               font=small)
    return img
