"""Stand-in faces for tests and demos without FER2013: cartoon faces whose expression follows
the label (data.write_fer2013_csv and write_image_folder store them as a dataset)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from ccyclegan.core.data import IMAGE_SIZE, NUM_CLASSES, FaceData

# Per emotion: mouth curve (+ corners up), mouth opening, mouth width, brow tilt (+ inner ends
# down), brow raise, eye opening (half-height), asymmetry. In 48x48 pixels.
_EXPRESSIONS = np.array([
    [-1.5, 0.0, 13.0, 3.0, -1.5, 1.6, 0.0],   # angry: frown, brows down and in, narrow eyes
    [-1.0, 1.0, 11.0, 1.5, -0.5, 1.3, 3.0],   # disgust: lopsided mouth and brows, squint
    [-0.5, 3.0, 13.0, -2.5, 2.5, 3.8, 0.0],   # fear: brows up and in, wide eyes, mouth ajar
    [4.0, 2.0, 17.0, 0.0, 0.5, 2.3, 0.0],     # happy: broad smile
    [-3.5, 0.0, 12.0, -2.5, 0.5, 2.0, 0.0],   # sad: deep frown, brows up in the middle
    [0.0, 7.0, 9.0, -0.5, 4.0, 4.3, 0.0],     # surprise: round open mouth, high brows, big eyes
    [0.0, 0.0, 13.0, 0.0, 0.0, 2.6, 0.0],     # neutral
])
_SCALE = 2  # draw at twice the size, then area-downsample: cheap anti-aliasing


def _draw_face(params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    curve, opening, width, tilt, lift, eye, asym = params + rng.normal(0.0, 0.3, size=7)
    opening, eye = max(opening, 0.0), max(eye, 0.8)
    asym *= rng.choice((-1.0, 1.0))
    s = _SCALE
    background = rng.uniform(10, 90)
    skin = rng.uniform(120, 215)
    ink = skin - rng.uniform(70, 110)
    cx, cy = 24 + rng.uniform(-2, 2), 25 + rng.uniform(-2, 2)
    size = rng.uniform(0.9, 1.1)
    img = Image.new("L", (IMAGE_SIZE * s, IMAGE_SIZE * s), int(background))
    draw = ImageDraw.Draw(img)

    def box(x: float, y: float, rx: float, ry: float) -> list[float]:
        return [s * (x - rx), s * (y - ry), s * (x + rx), s * (y + ry)]

    draw.ellipse(box(cx, cy, 16 * size, 20 * size), fill=int(skin))
    for side in (-1, 1):
        ex, ey = cx + side * 7 * size, cy - 4 * size
        draw.ellipse(box(ex, ey, 3.2 * size, eye), fill=int(ink))
        by = ey - 5.5 - lift + (asym * 0.5 if side < 0 else 0.0)
        inner, outer = ex - side * 3.5 * size, ex + side * 4.5 * size
        draw.line([s * inner, s * (by + tilt / 2), s * outer, s * (by - tilt / 2)],
                  fill=int(ink), width=2 * s)
    draw.line([s * cx, s * (cy - 1), s * (cx - 1.5), s * (cy + 4)], fill=int(ink + 30), width=s)
    t = np.linspace(-1.0, 1.0, 15)
    mx, my = cx, cy + 10 * size
    xs = mx + t * width * size / 2
    centre = my - curve * t**2 + asym / 2 * t
    if opening < 0.8:
        draw.line([(s * x, s * y) for x, y in zip(xs, centre, strict=True)],
                  fill=int(ink), width=2 * s)
    else:
        profile = np.sqrt(1 - t**2)  # elliptic, so a wide-open mouth reads as an "O"
        upper = centre - 0.4 * opening * profile
        lower = centre + opening * profile
        outline = list(zip(xs, upper, strict=True)) + list(zip(xs[::-1], lower[::-1],
                                                               strict=True))
        draw.polygon([(s * x, s * y) for x, y in outline], fill=int(ink - 20))
    small = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    pixels = np.asarray(small, np.float32) + rng.normal(0.0, rng.uniform(2, 7), small.size[::-1])
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def synthetic_faces(n_per_class: int, seed: int = 0) -> FaceData:
    """Cartoon faces whose expression depends on the label, for tests and demos without
    FER2013. Classes are interleaved (0, 1, ..., 6, 0, ...) so any prefix is balanced."""
    if n_per_class < 0:
        raise ValueError(f"n_per_class must be >= 0, got {n_per_class}")
    rng = np.random.default_rng(seed)
    labels = np.arange(n_per_class * NUM_CLASSES, dtype=np.int64) % NUM_CLASSES
    images = (np.stack([_draw_face(_EXPRESSIONS[k], rng) for k in labels]) if labels.size
              else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8))
    return FaceData(torch.from_numpy(images).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE),
                    torch.from_numpy(labels))
