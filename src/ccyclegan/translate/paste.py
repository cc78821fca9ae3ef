"""The model's 48x48 edit applied to a photo at the photo's own resolution, in colour, without
a seam: the displacement field (the model's, or the optical flow of its edit) moves the
photo's own pixels, the painted change is added to the
luminance where the model put it (in the colour of the pixels around it), back-projection makes
the photo seen at 48x48 show the model's result, and a narrow fade at the frame's border keeps
the edge seamless. Measured: experiments/photo_release/.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ccyclegan.translate.faces import Box, _cv2, _region, _resize, turn_matrix, turned_region

__all__ = ["BORDER_RAMP", "COLOUR_GATE", "DETAIL_GATE", "GUIDE", "MATCH_ROUNDS", "MOVE", "PARTS",
           "SEAMLESS", "SHADE", "SHARPEN", "TEXTURE", "FaceEdit", "border_fade", "edge_mask",
           "flow_of_edit", "harmonic_fill", "luma_f", "moved_edit", "parts_mask", "paste_edit",
           "paste_turned", "settings", "warp_face"]

BORDER_RAMP = 0.05  # the edit fades to nothing over this share of the frame at each side
# paste_edit's defaults and the translator's switches (read at each call: settings()), chosen
# on the photo benchmark (experiments/photo_release/): old detail is kept where the paint
# changes a pixel by less than DETAIL_GATE grey levels, and MATCH_ROUNDS of back-projection
# make the photo seen at 48x48 show the model's (faded) result
DETAIL_GATE = 64.0
MATCH_ROUNDS = 3
# where the paint takes old detail out, its finest and faintest part stays (skin's grain: local
# RMS under TEXTURE grey levels), so a repainted region is as grainy as the photo around it
TEXTURE = 8.0
# the painted change less the harmonic fill of its border values (seamless cloning), so it is
# zero at the frame's edge without a fade taking the edit out over a band: off, since it keeps
# the edit in the translator's own frame (+1.8 points) but not through an independent
# framing, which cuts that band off (experiments/photo_release/)
SEAMLESS = False
# a model that predicts no displacement field of its own still has its edit applied as a move
# where a move explains it (flow_of_edit): the photo's own sharp pixels are moved, a mouth
# narrows and closes at full resolution instead of a 48-pixel change being laid over it
MOVE = True
# like DETAIL_GATE for colour (None: off): a pixel repainted nearly as it was keeps its own
# colour, taking the colour around it only in the share |paint| / COLOUR_GATE grey levels (a
# chin the model repaints a little darker stays skin-coloured instead of taking the mean colour
# around it, background included; the same reading on the photo benchmark,
# experiments/photo_release/)
COLOUR_GATE = 16.0
# guided upsampling of the paint (He et al.'s guided filter, the photo's luminance as guide;
# its regularisation in grey levels, 0: off): the paint, fitted at 48x48 as a local linear
# function of the photo's luminance, is applied to the luminance at full size, so a change
# follows the photo's own edges (teeth darkened more than the gaps between them) instead of
# arriving as a 48-pixel blur over them
GUIDE = 0.0
# the unsharp mask (its amount; 0: off) of the paint and back-projection's corrections before
# they are enlarged: bicubic enlargement spreads the model's edges over several photo pixels.
# Off: back-projection restores most of that by itself (at 1 the face region moves by 0.07
# grey levels on average), and the photo benchmark's reading moved by less than its own noise
# (+0.3 / +1.0 points, and -0.5 / 0.0 with the faces framed 1.1 times wider:
# experiments/photo_release/)
SHARPEN = 0.0
CHANGED = 4.0  # grey levels: the move fades out where the model changes the face by less
# the move kept on the parts an expression moves (mouth, eyes and brows of a FER-framed face,
# parts_mask) and left to paint elsewhere: on a cheek a fold the model lightens reads to the
# flow as a fold that collapses, and moving it bent the photo's fold into a ripple or a hook
# (the same reading on the photo benchmark, the person kept more often: experiments/photo_release/)
PARTS = True
# the chroma scaled by the edit's change of luminance to this power (0: kept as it was), so a
# face the model lightens keeps its saturation instead of paling (_recolour)
SHADE = 0.0


# --------------------------------------------------------------------------------------------
# Paste-back


class _Switch:
    """paste_edit's default for a setting: this module's switch as it is at the call."""

    def __repr__(self) -> str:
        return "<the module's switch>"


SWITCH: Any = _Switch()


def settings() -> dict[str, float | int | bool | None]:
    """paste_edit's settings as this module's switches say now (DETAIL_GATE, MATCH_ROUNDS,
    SEAMLESS, TEXTURE, COLOUR_GATE, GUIDE, SHARPEN, SHADE): what paste_edit uses for each setting it
    is not given, read at each call, so setting paste.SHARPEN = 1 changes translate()'s photos
    (and paste_edit's) as paste.MOVE does."""
    return {"detail_gate": DETAIL_GATE, "match": MATCH_ROUNDS, "seamless": SEAMLESS,
            "texture": TEXTURE, "colour_gate": COLOUR_GATE, "guide": GUIDE, "sharpen": SHARPEN,
            "shade": SHADE}


def border_fade(size: int, ramp: float = BORDER_RAMP) -> np.ndarray:
    """1 inside the frame, a smoothstep over the outer ``ramp`` of each side to 0 on its
    outermost pixels: the edit may go anywhere the model puts it, and still never leaves a
    seam at the frame's edge."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    u = np.clip((np.minimum(t, 1.0 - t) - 1.0 / size) / ramp, 0.0, 1.0)
    u = u * u * (3.0 - 2.0 * u)
    return u[:, None] * u[None, :]


def harmonic_fill(a: np.ndarray) -> np.ndarray:
    """The harmonic function (discrete Laplace equation) with a's values on its outermost ring.

    a - harmonic_fill(a) is zero on the ring and keeps a's detail inside: Perez et al.'s
    seamless cloning with the edit as the guidance field. A change the model makes at the
    frame's edge (a global shift, the jaw) becomes a smooth ramp that dies out inward, rather
    than the whole band being faded out. Solved exactly in the sine basis (the Dirichlet
    Laplacian's eigenvectors): a few small matrix products."""
    a = np.asarray(a, np.float64)
    n = a.shape[0]
    m = n - 2
    rhs = np.zeros((m, m))
    rhs[0, :] += a[0, 1:-1]
    rhs[-1, :] += a[-1, 1:-1]
    rhs[:, 0] += a[1:-1, 0]
    rhs[:, -1] += a[1:-1, -1]
    s, lam = _sine_basis(m)
    out = a.copy()
    out[1:-1, 1:-1] = s @ ((s @ rhs @ s) / (lam[:, None] + lam[None, :])) @ s
    return out.astype(np.float32)


@functools.lru_cache(maxsize=4)
def _sine_basis(m: int) -> tuple[np.ndarray, np.ndarray]:
    """The orthonormal DST-I matrix of size m (symmetric, its own inverse) and the eigenvalues
    of the 1-D Dirichlet Laplacian tridiag(-1, 2, -1)."""
    k = np.arange(1, m + 1)
    s = np.sqrt(2.0 / (m + 1)) * np.sin(np.pi * np.outer(k, k) / (m + 1))
    return s, 2.0 - 2.0 * np.cos(np.pi * k / (m + 1))


def edge_mask(size: int, frame: Box, shape: tuple[int, ...], ramp: float = 0.12) -> np.ndarray:
    """--no-detect: 1 everywhere, except a ramp along any side where the frame cuts the image
    (a non-square image), so that even there no edge shows."""
    h, w = shape[:2]
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    up = np.clip(t / ramp, 0.0, 1.0)
    down = up[::-1]
    mx = np.ones(size, np.float32)
    my = np.ones(size, np.float32)
    if frame.x > 0:
        mx *= up
    if frame.x + frame.w < w:
        mx *= down
    if frame.y > 0:
        my *= up
    if frame.y + frame.h < h:
        my *= down
    return my[:, None] * mx[None, :]


@dataclass
class FaceEdit:
    """The model's edit of one 48x48 face, in parts a photo can use at its own resolution.

    flow: [48, 48, 2] (dx, dy) in pixels of the 48x48 face, or None: the input is sampled at
    p + flow(p). paint: [48, 48] grey levels added after the move (new content). weight:
    [48, 48] in [0, 1], the share of each pixel painted anew (its old detail goes), or None
    (nothing is painted: all detail stays). delta: [48, 48], the model's whole change of the
    48x48 face (output - input), or None: what the photo, seen at 48x48, should show
    (paste_edit's match)."""

    paint: np.ndarray
    flow: np.ndarray | None = None
    weight: np.ndarray | None = None
    delta: np.ndarray | None = None


def paste_edit(pixels: np.ndarray, frame: Box, edit: FaceEdit, fade: np.ndarray,
               detail_gate: float | None = SWITCH, match: int = SWITCH, seamless: bool = SWITCH,
               texture: float = SWITCH, colour_gate: float | None = SWITCH,
               guide: float = SWITCH, sharpen: float = SWITCH, shade: float = SWITCH) -> None:
    """Apply a 48x48 edit to the photo pixels (HxW or HxWx3 uint8) in frame, in place, at the
    photo's own resolution.

    The displacement field (edit.flow: the model's, or flow_of_edit's), upsampled, moves the
    photo's own pixels (Lanczos), so what the model moves stays as sharp as the photo. The
    painted change is upsampled and added to the luminance; where a pixel is painted anew
    (weight w), its old fine detail is taken out in that share, and in colour it takes the
    colour of the unpainted pixels around it, so new content (a closed mouth over teeth, say) is
    skin- and lip-coloured rather than grey. fade (same size as edit) scales all of it: 0 on the
    frame's border, so nothing outside the frame changes and no seam shows. Pixels whose edit is
    zero keep their exact values. detail_gate (grey levels; None: the whole painted share, 0:
    never): take the detail out only in the share |paint| / detail_gate of a painted pixel, so a
    pixel repainted nearly as it was keeps it (measured: experiments/photo_release/);
    colour_gate (grey levels; None: the whole painted share, 0: never) the same for the colour;
    guide (grey levels; 0: off): the paint upsampled by the guided filter (_guided_up) rather
    than bicubic; sharpen (0: off): the unsharp mask (_unsharp) of the paint and of
    back-projection's corrections before they are enlarged, on faces over 1.5 times the model's
    size (smaller ones are barely enlarged). texture (grey levels; 0: none): the finest detail
    whose local RMS is under texture (skin's grain) is kept even where painted (_old_detail).
    match: rounds of back-projection (Irani and Peleg's, as in super-resolution): the photo's
    face, shrunk to 48x48 as a crop is, is compared with the faded 48x48 result (input + fade x
    delta) and the smooth difference, upsampled, is added to the luminance, so the photo seen at
    the model's scale shows what the model made (needs edit.delta). seamless: the paint and the
    delta matched lose their harmonic fill from the frame's border (harmonic_fill), zero there
    before the fade (not for --no-detect's whole-image frame). shade (0: off): _recolour's. A
    setting not given is the module's switch at the call (settings())."""
    detail_gate, match, seamless, texture, colour_gate, guide, sharpen, shade = _at_call(
        detail_gate, match, seamless, texture, colour_gate, guide, sharpen, shade)
    cv2 = _cv2()
    side = frame.w
    n = edit.paint.shape[0]
    x0, y0 = max(frame.x, 0), max(frame.y, 0)
    x1, y1 = min(frame.x + frame.w, pixels.shape[1]), min(frame.y + frame.h, pixels.shape[0])
    if x0 >= x1 or y0 >= y1:
        return

    up = functools.partial(_up, side=side)
    fade_hr = _closed(up(fade, cv2.INTER_LINEAR), fade)
    region = _region(pixels, frame).astype(np.float32)
    moved = region
    if edit.flow is not None and np.abs(edit.flow).max() > 1e-3:
        moved = _move(region, up(edit.flow, cv2.INTER_LINEAR) * (side / n) * fade_hr[:, :, None])
    paint48, delta48 = edit.paint, edit.delta
    if seamless:
        paint48, delta48 = (None if a is None else a - harmonic_fill(a) for a in (paint48, delta48))
    colour = moved.ndim == 3
    y_moved = luma_f(moved) if colour else moved
    paint48 = _unsharp(paint48, sharpen, side)
    paint = (_guided_up(paint48, y_moved, n, guide) if guide and side > n
             else up(paint48, cv2.INTER_CUBIC)) * fade_hr
    y_out = y_moved + paint
    if edit.weight is not None and edit.weight.max() > 1e-3:
        wgt = np.clip(up(edit.weight, cv2.INTER_LINEAR), 0.0, 1.0) * fade_hr
        change = np.abs(paint)
        # what the paint paints over: the old detail, where the paint changes the pixel enough
        y_out -= _gated(wgt, change, detail_gate) * _old_detail(y_moved, n, texture)
        if colour:
            chroma = moved - y_moved[:, :, None]
            near_chroma = _colour_around(moved, 1.0 - wgt, n)
            near_chroma -= luma_f(near_chroma)[:, :, None]
            wgt_c = _gated(wgt, change, colour_gate)
            moved = y_moved[:, :, None] + chroma + wgt_c[:, :, None] * (near_chroma - chroma)
    if match and delta48 is not None:
        y_in = luma_f(region) if colour else region
        target = _resize(y_in, n) + delta48 * fade
        for _ in range(match):
            fix = _unsharp(target - _resize(y_out, n), sharpen, side) * fade
            y_out += _closed(up(fix, cv2.INTER_CUBIC), fade)
    out = _recolour(moved, y_moved, y_out, fade_hr, n, shade) if colour else y_out
    part = out[y0 - frame.y:y1 - frame.y, x0 - frame.x:x1 - frame.x]
    pixels[y0:y1, x0:x1] = np.clip(np.rint(part), 0, 255).astype(np.uint8)


def paste_turned(pixels: np.ndarray, frame: Box, roll: float, edit: FaceEdit,
                 fade: np.ndarray, **settings: Any) -> None:
    """paste_edit for a face the model saw turned upright by roll degrees (crop_face's roll):
    the edit is pasted on the frame's region turned the same way, and only the change is turned
    back and added to the photo, so pixels it does not reach keep their exact values."""
    if not roll:
        paste_edit(pixels, frame, edit, fade, **settings)
        return
    cv2 = _cv2()
    before = np.ascontiguousarray(turned_region(pixels, frame, roll))
    after = before.copy()
    paste_edit(after, Box(0, 0, frame.w, frame.h), edit, fade, **settings)
    change = after.astype(np.float32) - before
    back = cv2.invertAffineTransform(turn_matrix(frame, roll))  # the frame's square -> photo
    corners = np.array([[0, 0, 1], [frame.w, 0, 1], [0, frame.h, 1], [frame.w, frame.h, 1]],
                       np.float64) @ back.T
    h, w = pixels.shape[:2]
    x0, y0 = (max(int(np.floor(v)), 0) for v in corners.min(0))
    x1, y1 = min(int(np.ceil(corners[:, 0].max())), w), min(int(np.ceil(corners[:, 1].max())), h)
    if x0 >= x1 or y0 >= y1:
        return
    back[:, 2] -= (x0, y0)
    moved = cv2.warpAffine(change, back, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    part = pixels[y0:y1, x0:x1].astype(np.float32) + moved
    pixels[y0:y1, x0:x1] = np.clip(np.rint(part), 0, 255).astype(np.uint8)


def _recolour(moved: np.ndarray, y_moved: np.ndarray, y_out: np.ndarray, fade_hr: np.ndarray,
              n: int, shade: float) -> np.ndarray:
    """The colour photo with luminance y_out and moved's chroma, scaled by how much the edit
    changes the luminance, to the power shade (0: the chroma as it was). A face the model
    lightens keeps its saturation as lit skin does, instead of paling to grey. The ratio is
    taken on the n x n grid, so a crease lightened pixel by pixel does not redden."""
    if not shade:
        return moved + (y_out - y_moved)[:, :, None]
    ratio = np.clip((_resize(y_out, n) + 8.0) / (_resize(y_moved, n) + 8.0), 0.25, 4.0) ** shade
    # 1 where the frame's fade closes
    scale = 1.0 + (_up(ratio, _cv2().INTER_LINEAR, y_out.shape[0]) - 1.0) * fade_hr
    return y_out[:, :, None] + (moved - y_moved[:, :, None]) * scale[:, :, None]


def _at_call(*given: Any) -> tuple[Any, ...]:
    """paste_edit's settings in settings()'s order, each SWITCH replaced by its switch now."""
    return tuple(now if v is SWITCH else v
                 for v, now in zip(given, settings().values(), strict=True))


def flow_of_edit(face: np.ndarray, edit: FaceEdit, window: int = 7, max_len: float = 3.0,
                 dead: float = 0.3, changed: float = CHANGED, smooth: float = 0.0,
                 parts: bool | None = None) -> FaceEdit:
    """The model's 48x48 edit as a move plus what the move cannot make: the dense optical flow
    (Farneback's) from the edited face back to the input, so that input(p + flow(p)) best
    explains output(p), and the paint left over. At a photo's resolution the move shifts the
    photo's own sharp pixels (a lip over the teeth, a mouth corner, a brow), where paint
    alone would lay a 48-pixel change over them. At 48x48 the result is the model's exactly
    (the paint makes up the difference). window: the flow's averaging window (pixels of the
    48x48 face; larger is smoother); max_len: its longest vector; dead: vectors shorter than
    this are dropped, longer ones fade in up to twice it (no resampling where the face barely
    moves: resampling costs the photo a little sharpness); changed (grey levels): the field
    fades out where the model changes the face by less (0: kept everywhere); smooth: the
    field's Gaussian blur after all that (pixels; 0: none), so that a fold the model moves
    moves along its whole length instead of bending where the field fades; parts: the field
    kept only on parts_mask (mouth, eyes, brows), the rest painted (None: PARTS, read at the
    call, so setting paste.PARTS switches it as paste.MOVE does the move). Defaults chosen
    on the photo benchmark (experiments/photo_release/). A model that predicts its own field
    (edit.flow set) is left as it is."""
    if edit.flow is not None or edit.delta is None or not np.abs(edit.delta).max() >= 0.5:
        return edit
    cv2 = _cv2()
    out = np.clip(np.rint(face.astype(np.float32) + edit.delta), 0, 255).astype(np.uint8)
    flow = cv2.calcOpticalFlowFarneback(out, face.astype(np.uint8), None, 0.5, 2, window, 5,
                                        5, 1.1, 0)
    length = np.linalg.norm(flow, axis=2, keepdims=True)
    flow *= np.minimum(1.0, max_len / np.maximum(length, 1e-6))
    if dead:
        flow *= _fade_in(length, dead)
    # only where the model changed the face: the flow of two equal images is not zero near
    # their edges and in flat regions (Farneback's fit is ill-posed there)
    if changed:
        near = cv2.GaussianBlur(np.abs(edit.delta).astype(np.float32), (0, 0), 1.5)
        flow *= np.clip(near / changed, 0.0, 1.0)[:, :, None]
    if smooth:
        flow = cv2.GaussianBlur(flow, (0, 0), smooth)
        if dead:  # the blur spreads short vectors where nothing moved
            flow *= _fade_in(np.linalg.norm(flow, axis=2, keepdims=True), dead)
    if PARTS if parts is None else parts:
        flow *= parts_mask(face.shape[0])[:, :, None]
    return moved_edit(face, edit.delta, flow, edit.weight)


def parts_mask(n: int = 48) -> np.ndarray:
    """Where an expression moves a FER-framed face (n x n, the translator's frame): an
    ellipse over the mouth and its corners, and the band of the eyes and brows; soft-edged,
    1 inside. The cheeks, the lower nose and the chin are outside: there the edit is paint.
    Placed on FER2013's framing (the mouth's centre at 0.76 of the side, a broad grin's
    corners within 0.3 of the centre line; the brows from 0.17, the lower lids by 0.48)."""
    cv2 = _cv2()
    y, x = (np.mgrid[0:n, 0:n].astype(np.float32) + 0.5) / n
    mask = (((y - 0.76) / 0.17) ** 2 + ((x - 0.5) / 0.3) ** 2 <= 1).astype(np.float32)
    mask[(y >= 0.17) & (y < 0.5) & (x >= 0.1) & (x < 0.9)] = 1.0
    return cv2.GaussianBlur(mask, (0, 0), 1.5 * n / 48)


def _fade_in(length: np.ndarray, dead: float) -> np.ndarray:
    """0 for vectors shorter than dead, 1 from twice it, linear between."""
    return np.clip(length / dead - 1.0, 0.0, 1.0)


def moved_edit(face: np.ndarray, delta: np.ndarray, flow: np.ndarray,
               weight: np.ndarray | None) -> FaceEdit:
    """The edit delta of a 48x48 face as the move flow [48, 48, 2] plus the paint left over
    (the edited face minus the moved input), so that at 48x48 the two make the edit exactly."""
    x = face.astype(np.float32)
    paint = x + delta - warp_face(x, flow.astype(np.float32))
    return FaceEdit(paint.astype(np.float32), flow.astype(np.float32), weight, delta)


def warp_face(face: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """face (HxW float) sampled at p + flow(p), bilinear with edges repeated: models.warp's
    twin in numpy."""
    cv2 = _cv2()
    h, w = face.shape
    map_x = np.arange(w, dtype=np.float32)[None, :] + flow[:, :, 0]
    map_y = np.arange(h, dtype=np.float32)[:, None] + flow[:, :, 1]
    return cv2.remap(face, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _old_detail(y: np.ndarray, n: int, texture: float) -> np.ndarray:
    """The luminance's detail finer than the n x n grid, less its finest and faintest part
    (a 1-pixel high-pass whose local RMS is under texture grey levels, fading out by twice
    that: skin's grain, not the edge of a tooth), which stays under paint so that a repainted
    region is not smoother than the photo around it."""
    cv2 = _cv2()
    side = y.shape[0]
    coarse = cv2.resize(cv2.resize(y, (n, n), interpolation=cv2.INTER_AREA), (side, side),
                        interpolation=cv2.INTER_CUBIC)
    detail = y - coarse
    if texture:
        fine = detail - cv2.GaussianBlur(detail, (0, 0), 1.0)
        rms = np.sqrt(cv2.GaussianBlur(fine * fine, (0, 0), 2.0))
        detail -= fine * np.clip(2.0 - rms / texture, 0.0, 1.0)  # faint: grain; strong: edges
    return detail


def _gated(weight: np.ndarray, change: np.ndarray, gate: float | None) -> np.ndarray:
    """The painted share weight in the proportion change / gate (grey levels), in full from
    gate: a pixel repainted nearly as it was keeps what it had (None: the whole weight; 0:
    none). detail_gate's and colour_gate's rule."""
    if gate is None:
        return weight
    return weight * np.clip(change / gate, 0.0, 1.0) if gate else np.zeros_like(weight)


def _guided_up(paint: np.ndarray, y: np.ndarray, n: int, eps: float, radius: int = 1
               ) -> np.ndarray:
    """paint (n x n) at y's size, as a ~ paint / y's local slope times y plus an offset, both
    fitted over (2 radius + 1)^2 windows of y shrunk to n x n (eps: the slope's regularisation,
    grey levels) and upsampled smooth: guided upsampling (He, Sun and Tang's guided filter)."""
    cv2 = _cv2()
    side = y.shape[0]
    g = _resize(y, n).astype(np.float32)
    k = (2 * radius + 1, 2 * radius + 1)

    def box(a: np.ndarray) -> np.ndarray:
        return cv2.blur(a, k, borderType=cv2.BORDER_REFLECT)

    mg, mp = box(g), box(paint)
    a = (box(g * paint) - mg * mp) / (box(g * g) - mg * mg + eps * eps)
    b = mp - a * mg
    a_hr, b_hr = (cv2.resize(box(v), (side, side), interpolation=cv2.INTER_LINEAR)
                  for v in (a, b))
    return a_hr * y + b_hr


def _up(a: np.ndarray, how: int, side: int) -> np.ndarray:
    """a (n x n, float32) at side x side: OpenCV's interpolation how when enlarging, area
    averaging when shrinking."""
    a = np.ascontiguousarray(a, np.float32)
    if a.shape[0] == side:
        return a
    return _cv2().resize(a, (side, side),
                         interpolation=how if side > a.shape[0] else _cv2().INTER_AREA)


def _unsharp(a: np.ndarray, amount: float, side: int) -> np.ndarray:
    """a (n x n, to be enlarged to side x side) plus amount times its detail finer than a
    Gaussian of 0.6 of its pixel: the contrast that bicubic enlargement takes from the model's
    edges, given back before it (on the n x n grid: a blur at the photo's size would cost a
    large face seconds). Faces under 1.5 n (barely enlarged) and amount 0: a itself."""
    if not amount or side <= 1.5 * a.shape[0]:
        return a
    a = np.asarray(a, np.float32)
    return a + amount * (a - _cv2().GaussianBlur(a, (0, 0), 0.6))


def _closed(fade_hr: np.ndarray, fade: np.ndarray) -> np.ndarray:
    """A side the 48x48 fade closes (all zero) stays closed at the photo's size, where
    bilinear upsampling would leak a trace of the next row into the last."""
    for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        if not fade[edge].any():
            fade_hr[edge] = 0.0
    return fade_hr


def _move(region: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """region sampled at p + flow(p) (Lanczos: the sharpest of OpenCV's kernels, measured on
    the photo benchmark against bicubic), its exact pixels kept where nothing moves."""
    cv2 = _cv2()
    still = (np.abs(flow) < 1e-3).all(axis=2)
    rows, cols = np.nonzero(~still.all(axis=1))[0], np.nonzero(~still.all(axis=0))[0]
    moved = region.copy()
    if not len(rows):
        return moved
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1  # only where it moves
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] + flow[y0:y1, x0:x1, 1]
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] + flow[y0:y1, x0:x1, 0]
    part = cv2.remap(region, xs, ys, cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)
    keep = still[y0:y1, x0:x1]
    part[keep] = region[y0:y1, x0:x1][keep]
    moved[y0:y1, x0:x1] = part
    return moved


def _colour_around(rgb: np.ndarray, keep: np.ndarray, n: int) -> np.ndarray:
    """The mean colour of the kept pixels (weights keep) around each pixel: a Gaussian of a
    twelfth of the frame, normalised by the weights. Smooth, so computed on an n x n copy and
    upsampled (a blur of the full frame would cost ~100x more on a large face)."""
    cv2 = _cv2()
    side = rgb.shape[0]
    small = min(side, 2 * n)
    if small != side:
        rgb_s = cv2.resize(rgb * keep[:, :, None], (small, small), interpolation=cv2.INTER_AREA)
        keep_s = cv2.resize(keep, (small, small), interpolation=cv2.INTER_AREA)
    else:
        rgb_s, keep_s = rgb * keep[:, :, None], keep
    sigma = max(1.0, small / 12)
    near = cv2.GaussianBlur(rgb_s, (0, 0), sigma)
    near /= np.maximum(cv2.GaussianBlur(keep_s, (0, 0), sigma), 1e-3)[:, :, None]
    if small != side:
        near = cv2.resize(near, (side, side), interpolation=cv2.INTER_LINEAR)
    return near


def luma_f(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y of float HxWx3 RGB, as luma() on uint8."""
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)
