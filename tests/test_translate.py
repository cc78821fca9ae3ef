"""`ccyclegan translate` and ExpressionTranslator: detection, framing, paste-back, intensity,
API types, EXIF, and the command's errors. No trained model exists in tests: a small random
generator still changes pixels, which is what the plumbing checks need."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ccyclegan.cli import commands as cli
from ccyclegan.core.data import EMOTIONS
from ccyclegan.core.synthetic import synthetic_faces
from ccyclegan.translate.api import ExpressionTranslator
from ccyclegan.translate.faces import (
    FACE_SIZE,
    Box,
    NoFaceError,
    TranslateError,
    crop_face,
    detect_faces,
    frame_box,
)
from ccyclegan.translate.files import expand_inputs
from ccyclegan.translate.inputs import parse_targets
from ccyclegan.translate.paste import FaceEdit, border_fade, flow_of_edit, harmonic_fill, paste_edit

skimage_data = pytest.importorskip("skimage.data")

# scikit-image's astronaut (Eileen Collins): her face is at about x 175..276, y 64..165
FACE = Box(175, 64, 101, 101)


@pytest.fixture(scope="module")
def tr(gen_path) -> ExpressionTranslator:
    return ExpressionTranslator.load(gen_path)


@pytest.fixture(scope="module")
def astro_all(tr, astronaut):
    """Her face in all 7 emotions (one detection, one edit), shared by several tests."""
    return tr.translate_faces(astronaut, to="all")


@pytest.fixture(scope="module")
def other() -> str:
    """A target emotion: any, since every request is G's answer to it."""
    return "surprise"


@pytest.fixture(scope="module")
def small(astronaut) -> np.ndarray:
    """The astronaut at 256x256 (face about 50 px): quicker where only plumbing is checked."""
    return np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.Resampling.BOX))


def jpeg_bytes(a: np.ndarray, quality: int = 92, exif=None) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(a)
    if exif is not None:
        img.save(buf, "JPEG", quality=quality, exif=exif)
    else:
        img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def near(box: Box, ref: Box, tol: float = 0.25) -> bool:
    return (abs(box.x + box.w / 2 - ref.x - ref.w / 2) < tol * ref.w
            and abs(box.y + box.h / 2 - ref.y - ref.h / 2) < tol * ref.h
            and abs(box.w - ref.w) < tol * ref.w)


def outside(shape, frame: Box, margin: int = 0) -> np.ndarray:
    """Boolean HxW: True away from frame (by margin pixels)."""
    m = np.ones(shape[:2], bool)
    m[max(0, frame.y - margin):frame.y + frame.h + margin,
      max(0, frame.x - margin):frame.x + frame.w + margin] = False
    return m


# ------------------------------------------------------------------------------ detection


def test_haar_finds_the_astronauts_face(astronaut):
    for img in (astronaut, np.asarray(Image.open(io.BytesIO(jpeg_bytes(astronaut))))):
        boxes = detect_faces(img)
        assert len(boxes) == 1, boxes
        assert near(boxes[0], FACE)
    # grey, and in a big photo: found at the right place, original resolution
    assert near(detect_faces(np.asarray(Image.fromarray(astronaut).convert("L")))[0], FACE)
    canvas = np.full((720, 1280, 3), 90, np.uint8)
    canvas[100:612, 600:1112] = astronaut
    (box,) = detect_faces(canvas)
    assert near(box, Box(FACE.x + 600, FACE.y + 100, FACE.w, FACE.h))


def test_the_verifier_removes_false_positives():
    # the first cascade alone fires on coins and on a cell; the second does not
    for name, fires in (("coins", True), ("cell", True), ("coffee", False), ("rocket", False)):
        img = getattr(skimage_data, name)()
        if img.dtype != np.uint8:
            img = (img / img.max() * 255).astype(np.uint8)
        assert (len(detect_faces(img, verify=False)) > 0) == fires, name
        assert detect_faces(img) == [], name


def test_frame_is_a_slightly_enlarged_square():
    f = frame_box(Box(100, 100, 100, 100))
    assert f.w == f.h == 105
    assert abs(f.x + f.w / 2 - 150) <= 1 and f.y + f.h / 2 < 150


# ------------------------------------------------------------------------------ photos


def test_photo_face_changes_background_does_not(tr, astronaut, other):
    result = tr.translate_faces(astronaut, to=other)
    (face,) = result.faces
    out = result.image()
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - astronaut).max(axis=2)
    inner = diff[FACE.y + 25:FACE.y + 75, FACE.x + 25:FACE.x + 75]
    assert inner.mean() > 2.0  # the face changed
    assert (diff[outside(out.shape, face.frame)] == 0).all()  # nothing else did
    ys, xs = np.nonzero(diff)
    assert xs.min() >= face.frame.x and xs.max() < face.frame.x + face.frame.w
    # seamless: the change fades out, none on the frame's border rows/columns
    f = face.frame
    border = np.concatenate([diff[f.y, f.x:f.x + f.w], diff[f.y + f.h - 1, f.x:f.x + f.w],
                             diff[f.y:f.y + f.h, f.x], diff[f.y:f.y + f.h, f.x + f.w - 1]])
    assert border.max() == 0
    assert face.before.shape == (FACE_SIZE, FACE_SIZE) and face.before.dtype == np.uint8


def test_paste_moves_the_photos_own_pixels_sharply():
    """A field of one 48x48 pixel moves an edge of a 192-pixel frame by 4 photo pixels, and the
    edge stays as sharp as it was (bicubic sampling of the photo, not an upsampled blur);
    outside the frame and where the field is zero, pixels keep their exact values."""
    photo = np.full((240, 240, 3), 60, np.uint8)
    photo[:, 120:] = 200  # a sharp vertical edge at x = 120
    frame = Box(24, 24, 192, 192)
    flow = np.zeros((48, 48, 2), np.float32)
    flow[:, :, 0] = -1.0  # sample one face pixel to the left: the edge moves right
    out = photo.copy()
    paste_edit(out, frame, FaceEdit(np.zeros((48, 48), np.float32), flow), border_fade(48))
    row = out[120, :, 0].astype(int)
    assert (row[124:200] == 200).all() and (row[60:119] == 60).all()
    assert np.abs(row[119:126] - np.array([60, 60, 60, 60, 60, 200, 200])).max() <= 12
    assert np.array_equal(out[:24], photo[:24]) and np.array_equal(out[:, :24], photo[:, :24])
    same = photo.copy()
    paste_edit(same, frame, FaceEdit(np.zeros((48, 48), np.float32)), border_fade(48))
    assert np.array_equal(same, photo)


def test_painted_content_takes_the_colour_around_it():
    """Where the model paints new content (weight 1), the pixel gets the model's luminance in
    the colour of the unpainted pixels around it: white teeth painted darker become
    skin-coloured, not grey; the photo's fine detail there goes."""
    photo = np.zeros((192, 192, 3), np.uint8)
    photo[:] = (200, 120, 100)  # skin
    photo[88:104, 72:120] = 245  # teeth, with a dark gap
    photo[88:104, 95:97] = 120
    frame = Box(0, 0, 192, 192)
    weight = np.zeros((48, 48), np.float32)
    weight[20:28, 16:32] = 1.0
    paint = np.zeros((48, 48), np.float32)
    paint[22:26, 18:30] = -100.0  # the teeth region painted darker
    out = photo.copy()
    paste_edit(out, frame, FaceEdit(paint, None, weight), border_fade(48))
    r, g, b = (out[92:100, 80:112, k].astype(int) for k in range(3))
    assert (r - b).mean() > 40 and (r - g).mean() > 25  # skin's hue, not grey
    gap = np.abs(out[92:100, 95].astype(int) - out[92:100, 92]).max()
    assert gap < 30  # the gap between the teeth (detail finer than the 48x48 grid) is gone
    assert np.array_equal(out[:10], photo[:10])


def test_guided_paint_follows_the_photos_edges():
    """paste_edit(guide=E): a paint that the 48x48 face ties to its luminance (the bright side
    darkened) lands on the photo with the photo's own sharp edge, where bicubic upsampling
    spreads it over several pixels."""
    photo = np.full((192, 192, 3), 80, np.uint8)
    photo[:, 97:] = 200  # a sharp edge between two 48x48 pixels' centres
    frame = Box(0, 0, 192, 192)
    y48 = np.full((48, 48), 80.0, np.float32)
    y48[:, 24:] = 200.0
    y48[:, 24] = 110.0  # the 48x48 face sees the edge inside pixel 24
    paint = (-0.25 * (y48 - 80.0)).astype(np.float32)  # the bright side darkened by 30
    jumps = {}
    for guide in (0.0, 4.0):
        out = photo.copy()
        paste_edit(out, frame, FaceEdit(paint), np.ones((48, 48), np.float32), match=0,
                   guide=guide)
        change = out[96, 80:116, 0].astype(int) - photo[96, 80:116, 0]
        assert abs(change[:8].mean()) < 4 and -34 < change[-8:].mean() < -26  # the same edit
        steps = np.diff(change)
        jumps[guide] = (int(-steps.min()), 80 + int(steps.argmin()) + 1)
    assert jumps[4.0][0] > 20 and jumps[4.0][1] == 97  # in one pixel, at the photo's edge
    assert jumps[0.0][0] < 10  # bicubic: spread out


def test_sharpened_paint_gives_the_models_edge_its_contrast_back():
    """paste_edit(sharpen=K): the paint enlarged from 48x48 has its edges steepened at the
    scale of one 48x48 pixel (bicubic spreads them over several photo pixels), the same change
    away from the edge, nothing at the frame's closed border; after back-projection, which
    restores most of that itself, about the same edge. Faces under 1.5 times the model's size,
    and the edit's own arrays, are left as they are."""
    photo = np.full((240, 240, 3), 120, np.uint8)
    frame = Box(0, 0, 240, 240)
    paint = np.zeros((48, 48), np.float32)
    paint[:, 24:] = -40.0  # the model darkens the right half
    fade = border_fade(48)
    steepest, far = {}, {}
    for k in (0.0, 1.0):
        for match in (0, 3):  # back-projection's corrections are sharpened too
            out = photo.copy()
            paste_edit(out, frame, FaceEdit(paint.copy(), None, None, paint), fade, match=match,
                       sharpen=k)
            change = out[120, :, 0].astype(int) - 120
            steepest[k, match] = int(-np.diff(change[100:140]).min())
            far[k, match] = (change[60:80].mean(), change[160:180].mean())
            assert np.array_equal(out[0], photo[0]) and np.array_equal(out[:, -1], photo[:, -1])
    assert steepest[1.0, 0] > 1.25 * steepest[0.0, 0]  # 12 against 9 grey levels per pixel
    # back-projection alone steepens it as much (12): the mask changes little after it
    assert abs(steepest[1.0, 3] - steepest[0.0, 3]) <= 2 and steepest[0.0, 3] > steepest[0.0, 0]
    for match in (0, 3):
        assert np.allclose(far[1.0, match], far[0.0, match], atol=1.0)
        assert far[1.0, match][1] < -35

    small = np.full((60, 60, 3), 120, np.uint8)  # 1.25 times the model's size
    outs = []
    for k in (0.0, 1.0):
        out = small.copy()
        paste_edit(out, Box(0, 0, 60, 60), FaceEdit(paint), fade, sharpen=k)
        outs.append(out)
    assert np.array_equal(outs[0], outs[1])
    before = paint.copy()
    paste_edit(np.full((48, 48, 3), 120, np.uint8), Box(0, 0, 48, 48), FaceEdit(paint), fade)
    assert np.array_equal(paint, before)  # at the model's own size the paint is not written to


def test_a_colour_gate_keeps_the_colour_of_a_pixel_repainted_as_it_was():
    """paste_edit(colour_gate=T): a pixel the model paints anew but changes by little keeps
    its own colour (a chin repainted nearly as it was stays skin-coloured), where the
    ungated paste gives it the colour around it."""
    photo = np.zeros((192, 192, 3), np.uint8)
    photo[:] = (90, 160, 90)  # green around
    photo[64:128, 64:128] = (200, 110, 100)  # a red patch
    frame = Box(0, 0, 192, 192)
    weight = np.zeros((48, 48), np.float32)
    weight[16:32, 16:32] = 1.0
    paint = np.full((48, 48), 1.0, np.float32) * weight
    hue = {}
    for gate in (None, 16.0):
        out = photo.copy()
        paste_edit(out, frame, FaceEdit(paint, None, weight), border_fade(48), match=0,
                   colour_gate=gate)
        r, g = (out[88:104, 88:104, k].astype(int) for k in range(2))
        hue[gate] = float((r - g).mean())
    assert hue[16.0] > 80 and hue[None] < 40  # 90 in the photo
    out = photo.copy()  # 0: never (it raised a TypeError)
    paste_edit(out, frame, FaceEdit(paint, None, weight), border_fade(48), match=0, colour_gate=0)
    assert float((out[88:104, 88:104, 0].astype(int) - out[88:104, 88:104, 1]).mean()) > 85


def test_shade_keeps_a_lightened_face_as_colourful_as_it_was():
    """paste_edit(shade=S): the chroma scaled by the luminance's change to the power S. A skin
    patch the model lightens by 40 grey levels keeps its chroma as it was with S 0 (paler: the
    chroma over the luminance drops), and its saturation with S 1; no edit changes nothing,
    and the frame's closed border keeps its pixels either way."""
    from ccyclegan.evaluate.photos import colourfulness
    from ccyclegan.translate.paste import luma_f

    photo = np.zeros((192, 192, 3), np.uint8)
    photo[:] = (150, 100, 80)  # skin
    frame = Box(0, 0, 192, 192)
    paint = np.zeros((48, 48), np.float32)
    paint[12:36, 12:36] = 40.0
    patch = Box(64, 64, 64, 64)
    before = colourfulness(photo, patch)
    got = {}
    for shade in (0.0, 0.5, 1.0):
        out = photo.copy()
        paste_edit(out, frame, FaceEdit(paint), border_fade(48), match=0, shade=shade)
        assert np.array_equal(out[0], photo[0]) and np.array_equal(out[:, -1], photo[:, -1])
        lum = luma_f(out[64:128, 64:128].astype(np.float32))
        assert abs(lum.mean() - (luma_f(photo[0, 0].astype(np.float32)) + 40)) < 1.5
        got[shade] = colourfulness(out, patch) / before
        same = photo.copy()
        paste_edit(same, frame, FaceEdit(np.zeros((48, 48), np.float32)), border_fade(48),
                   match=0, shade=shade)
        assert np.array_equal(same, photo)
    assert got[0.0] < 0.8 and got[0.0] < got[0.5] < got[1.0] and abs(got[1.0] - 1.0) < 0.05


def test_colourfulness_is_none_for_grey_and_falls_as_a_face_pales():
    from ccyclegan.evaluate.photos import colourfulness

    frame = Box(0, 0, 32, 32)
    assert colourfulness(np.full((32, 32), 120, np.uint8), frame) is None
    assert colourfulness(np.full((32, 32, 3), 120, np.uint8), frame) is None  # R = G = B
    skin = np.zeros((32, 32, 3), np.uint8)
    skin[:] = (150, 100, 80)
    pale = np.clip(skin.astype(int) + 40, 0, 255).astype(np.uint8)  # lighter, same chroma
    assert colourfulness(pale, frame) < 0.8 * colourfulness(skin, frame)


def test_back_projection_makes_the_photo_show_the_48px_result():
    """paste_edit's match: the pasted photo, cropped to 48x48 again as the model's input was,
    shows the faded 48x48 result (input + fade x delta) far more closely than an upsampled
    paste alone, on a photo with its own fine detail; outside the frame nothing changes."""
    rng = np.random.default_rng(0)
    photo = rng.integers(40, 216, (300, 300, 3)).astype(np.uint8)  # detail finer than 48 px
    frame = Box(30, 30, 240, 240)
    delta = np.zeros((48, 48), np.float32)
    delta[::3, :] = 40.0  # an edit as fine as the 48x48 grid: what upsampling loses
    delta[20:30, 10:38] -= 30.0
    fade = border_fade(48)
    target = crop_face(photo, frame).astype(np.float32) + delta * fade

    def error(match: int, sharpen: float = 0.0) -> float:
        out = photo.copy()
        paste_edit(out, frame, FaceEdit(delta, None, None, delta), fade, match=match,
                   sharpen=sharpen)
        assert np.array_equal(out[:30], photo[:30]) and np.array_equal(out[:, 270:], photo[:, 270:])
        return float(np.abs(crop_face(out, frame).astype(np.float32) - target).mean())

    assert error(3) < 0.3 * error(0)
    assert error(1) < error(0)
    # with the unsharp mask of what is enlarged (paint and corrections) it still converges
    assert error(3, 1.0) < 0.3 * error(0, 1.0) and error(3, 1.0) < 1.1 * error(3)


def test_only_luminance_changes(tr, astronaut, other, monkeypatch):
    """Painted, an edit of a model that paints no new content (the direct output: no mask)
    changes luminance only (moved, the photo's pixels carry their own colours: see
    test_flow_of_edit_...)."""
    monkeypatch.setattr("ccyclegan.translate.paste.MOVE", False)
    out = tr.translate(astronaut, to=other).astype(int)
    d = out - astronaut
    unclipped = ((out > 0) & (out < 255)).all(axis=2)
    changed = (d != 0).any(axis=2) & unclipped
    assert changed.sum() > 500
    # the same dY added to R, G and B: Cr and Cb (colour) untouched
    assert (d[changed][:, 0] == d[changed][:, 1]).all()
    assert (d[changed][:, 1] == d[changed][:, 2]).all()


def test_big_photo_keeps_its_resolution(tr, astronaut):
    canvas = np.full((720, 1280, 3), 90, np.uint8)
    canvas[100:612, 600:1112] = astronaut
    result = tr.translate_faces(canvas, to="all")
    out = result.image("happy")
    assert out.shape == (720, 1280, 3)
    assert (out[outside(out.shape, result.faces[0].frame)] == canvas[
        outside(out.shape, result.faces[0].frame)]).all()
    assert (out != canvas).any()


def test_intensity_zero_is_identity_and_change_grows(tr, astronaut, astro_all, other):
    assert np.array_equal(tr.translate(astronaut, to=other, intensity=0.0), astronaut)
    crop = astro_all.faces[0].before[None]
    changes = []
    for a in (0.25, 0.5, 1.0):
        _, delta = tr.edit(crop, [other], a)
        changes.append(float(np.abs(delta).mean()))
    assert 0 < changes[0] < changes[1] < changes[2]
    assert np.allclose(delta[0, 0], astro_all.faces[0].delta[other], atol=0.01)  # the photo's
    # continuous: a small step in intensity makes a small change
    d1 = tr.edit(crop, [other], 0.50)[1]
    d2 = tr.edit(crop, [other], 0.52)[1]
    assert np.abs(d1 - d2).mean() < 0.1 * changes[1]


def test_edit_is_gs_translation_blended_with_the_input(tr, astro_all):
    """out = x + a (G(x|t) - x): no guess about the input face enters, so no request is
    silenced, the face's own emotion included."""
    import torch

    from ccyclegan.core.generator_files import load_generator

    G, _, _ = load_generator(tr.source)
    crop = astro_all.faces[0].before[None]
    x = torch.from_numpy(crop).float()[:, None] / 127.5 - 1
    for a in (0.3, 1.0):
        after, delta = tr.edit(crop, list(EMOTIONS), a)
        for k in range(len(EMOTIONS)):
            with torch.no_grad():
                g = G(x, torch.eye(7)[k:k + 1])
            want = ((x + a * (g - x)).clamp(-1, 1) - x)[0, 0].numpy() * 127.5
            assert np.abs(delta[0, k] - want).max() < 1e-3
            assert np.abs(delta[0, k]).mean() > 0.5  # every target changes the face


def test_a_list_of_targets_gives_a_strip_of_those(tr, astronaut, astro_all):
    """to="surprise,SAD": the input then surprise and sad, each tile the same as in the strip
    of all seven (to a grey level: a batch of another size may round a pixel the other way);
    a name given twice is translated once."""
    assert parse_targets(" surprise, SAD ,surprise") == ("surprise", "sad")
    strip = tr.translate(astronaut, to="surprise,SAD")
    tile = strip.shape[0]
    assert strip.shape == (tile, 3 * tile, 3)
    full = astro_all.strip(tile)
    for k, target in enumerate(("surprise", "sad")):
        j = 1 + EMOTIONS.index(target)
        diff = (strip[:, (k + 1) * tile:(k + 2) * tile].astype(int)
                - full[:, j * tile:(j + 1) * tile])
        assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 1e-3


def test_all_gives_a_strip_of_seven(tr, astronaut, astro_all):
    result = astro_all
    (face,) = result.faces
    assert list(face.after) == list(EMOTIONS)
    strip = result.strip()
    tile = strip.shape[0]
    assert strip.shape == (tile, 8 * tile, 3)
    tiles = [strip[:, k * tile:(k + 1) * tile] for k in range(8)]
    assert all(not np.array_equal(t, tiles[0]) for t in tiles[1:])  # every emotion changes
    assert result.crops(0).shape == (FACE_SIZE, 8 * FACE_SIZE)
    api = tr.translate(astronaut, to="all")
    assert np.array_equal(api, strip)


def test_edit_of_crops(tr):
    faces = synthetic_faces(1, seed=3).images[:, 0].numpy()  # 7 FER-like crops
    after, delta = tr.edit(faces, ["happy", "sad"], 1.0)
    assert after.shape == (7, 2, 48, 48) and delta.shape == (7, 2, 48, 48)
    assert np.array_equal(after, np.clip(np.rint(faces[:, None] + delta), 0, 255))
    a0, *_ = tr.edit(faces, ["happy"], 0.0)
    assert np.array_equal(a0[:, 0], faces)
    with pytest.raises(TranslateError):
        tr.edit(faces.astype(np.float32), ["happy"])


def test_no_detect_whole_image_is_the_face(tr):
    crop = synthetic_faces(1, seed=5).images[3, 0].numpy()  # a 48x48 grey face
    to = "happy"
    result = tr.translate_faces(crop, to=to, detect=False)
    (face,) = result.faces
    assert face.frame == Box(0, 0, 48, 48)
    out = tr.translate(crop, to=to, detect=False)
    assert out.shape == (48, 48) and out.dtype == np.uint8
    assert np.array_equal(out, face.after[to])  # the model's output, no feathering
    assert (out != crop).any()
    # a non-square crop: the centre square is the face, the rest is untouched
    wide = np.pad(crop, ((0, 0), (16, 16)), mode="edge")
    out = tr.translate(wide, to=to, detect=False)
    assert out.shape == wide.shape
    assert np.array_equal(out[:, :16], wide[:, :16]) and np.array_equal(out[:, -16:],
                                                                        wide[:, -16:])
    assert (out != wide).any()


def test_no_face_raises(tr):
    with pytest.raises(NoFaceError, match="no face found"):
        tr.translate(np.full((300, 400, 3), 128, np.uint8), to="happy")


# ------------------------------------------------------------------------------ API types


def test_api_returns_the_kind_it_was_given(tr, small, tmp_path):
    path = tmp_path / "astro.png"
    Image.fromarray(small).save(path)
    out = tr.translate(path, to="sad")
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (256, 256)
    assert isinstance(tr.translate(str(path), to="sad"), Image.Image)

    grey = Image.fromarray(small).convert("L")
    out = tr.translate(grey, to="sad")
    assert isinstance(out, Image.Image) and out.mode == "L"
    out = tr.translate(np.asarray(grey), to="sad")
    assert isinstance(out, np.ndarray) and out.shape == (256, 256)
    out = tr.translate(small, to="sad")
    assert isinstance(out, np.ndarray) and out.shape == (256, 256, 3)

    rgba = np.dstack([small, np.full((256, 256), 200, np.uint8)])
    out = tr.translate(rgba, to="sad")
    assert out.shape == (256, 256, 4) and (out[:, :, 3] == 200).all()
    assert tr.translate(Image.fromarray(rgba), to="sad").mode == "RGBA"

    for bad in (small.astype(np.float32), np.zeros((4, 4, 2), np.uint8), 42):
        with pytest.raises(TranslateError):
            tr.translate(bad, to="sad")
    with pytest.raises(TranslateError, match="unknown emotion"):
        tr.translate(small, to="joy")
    with pytest.raises(TranslateError, match="unknown emotion 'joy' in 'sad,joy'"):
        tr.translate(small, to="sad,joy")
    with pytest.raises(TranslateError, match="unknown emotion"):
        tr.translate(small, to="sad,")
    with pytest.raises(TranslateError, match="intensity"):
        tr.translate(small, to="sad", intensity=1.01)


def test_exif_rotation_is_honoured(tr, astronaut, tmp_path):
    upright = np.ascontiguousarray(astronaut[:, 40:440])  # 512 high, 400 wide
    stored = np.ascontiguousarray(np.rot90(upright))  # as a camera held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "sideways.jpg"
    path.write_bytes(jpeg_bytes(stored, exif=exif))
    result = tr.translate_faces(path, to="happy")
    assert len(result.faces) == 1 and result.image().shape == (512, 400, 3)
    out = tr.translate(path, to="happy")
    assert out.size == (400, 512)
    # without the EXIF tag, the sideways face is not found: the tag is what made it work
    plain = tmp_path / "plain.jpg"
    plain.write_bytes(jpeg_bytes(stored))
    with pytest.raises(NoFaceError):
        tr.translate(plain, to="happy")
    # written files carry no orientation tag (the pixels are upright already)
    assert cli.main(["translate", str(path), "--to", "happy", "--checkpoint",
                     str(tr.source), "-q"]) == 0
    with Image.open(tmp_path / "sideways_happy.jpg") as img:
        assert img.size == (400, 512) and img.getexif().get(0x0112, 1) == 1


def test_bundled_model_lookup(monkeypatch, gen_path):
    from ccyclegan.translate import api as translate

    found = translate.bundled_model_path()
    assert found is None or found.name == "ccyclegan_fer2013.safetensors"
    monkeypatch.setattr(translate, "bundled_model_path", lambda: gen_path)
    assert ExpressionTranslator.load().source == str(gen_path)
    monkeypatch.setattr(translate, "bundled_model_path", lambda: None)
    with pytest.raises(TranslateError, match="no bundled model exists yet"):
        ExpressionTranslator.load()


def test_lazy_export():
    import ccyclegan

    assert ccyclegan.ExpressionTranslator is ExpressionTranslator


# ------------------------------------------------------------------------------ the command


@pytest.fixture
def photos(tmp_path, small) -> Path:
    (tmp_path / "astro.jpg").write_bytes(jpeg_bytes(small))
    return tmp_path


def run(argv, capsys) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_cli_writes_beside_the_input(photos, gen_path, capsys):
    rc, out, err = run(["translate", photos / "astro.jpg", "--to", "happy",
                        "--checkpoint", gen_path], capsys)
    assert rc == 0, err
    written = photos / "astro_happy.jpg"
    assert "astro_happy.jpg" in out
    with Image.open(written) as img:
        assert img.size == (256, 256) and img.mode == "RGB"
    # a folder as input skips the earlier output, -o puts results in a folder
    rc, out, err = run(["translate", photos, "--to", "all", "--checkpoint", gen_path,
                        "-o", photos / "out", "--intensity", "0.5"], capsys)
    assert rc == 0, err
    assert listing(photos / "out") == {"astro_all.jpg"}
    with Image.open(photos / "out" / "astro_all.jpg") as img:
        assert img.width == 8 * img.height
    # several targets, comma-separated: a strip of those, named after them
    rc, out, err = run(["translate", photos / "astro.jpg", "--to", "Sad, angry,sad",
                        "--checkpoint", gen_path, "-o", photos / "out"], capsys)
    assert rc == 0, err
    assert listing(photos / "out") == {"astro_all.jpg", "astro_sad-angry.jpg"}
    with Image.open(photos / "out" / "astro_sad-angry.jpg") as img:
        assert img.width == 3 * img.height


def test_cli_crop_only_and_no_detect(photos, gen_path, capsys):
    rc, _, err = run(["translate", photos / "astro.jpg", "--to", "sad", "--crop-only",
                      "--checkpoint", gen_path, "-o", photos / "crops"], capsys)
    assert rc == 0, err
    with Image.open(photos / "crops" / "astro_sad_face1.png") as img:
        assert img.size == (48, 48) and img.mode == "L"
    crop = photos / "face48.png"
    Image.fromarray(synthetic_faces(1, seed=2).images[0, 0].numpy()).save(crop)
    rc, _, err = run(["translate", crop, "--to", "happy", "--no-detect", "--checkpoint",
                      gen_path, "-o", photos / "one.png"], capsys)
    assert rc == 0, err
    with Image.open(photos / "one.png") as img:
        assert img.size == (48, 48)


def assert_clean_error(rc: int, err: str, folder: Path, before: set[str], what: str) -> None:
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ccyclegan translate: error: ") and what in lines[0], lines[0]
    assert listing(folder) == before


@pytest.mark.parametrize("case", ["no_face", "not_image", "truncated", "emotion", "intensity",
                                  "intensity_nan", "checkpoint", "no_bundled", "overwrite",
                                  "missing_input", "one_bad_of_two"])
def test_cli_errors_are_one_line_and_write_nothing(case, photos, gen_path, capsys, monkeypatch,
                                                   astronaut):
    good = photos / "astro.jpg"
    (photos / "blank.png").write_bytes(b"")
    Image.new("RGB", (640, 480), (120, 130, 140)).save(photos / "blank.png")
    (photos / "notes.jpg").write_text("not an image\n")
    (photos / "cut.jpg").write_bytes(jpeg_bytes(astronaut)[:4000])
    ck = ["--checkpoint", gen_path]
    argv, what = {
        "no_face": ([photos / "blank.png", "--to", "happy", *ck], "no face found"),
        "not_image": ([photos / "notes.jpg", "--to", "happy", *ck], "not a readable image"),
        "truncated": ([photos / "cut.jpg", "--to", "happy", *ck], "truncated"),
        "emotion": ([good, "--to", "joyful", *ck], "unknown emotion 'joyful'"),
        "intensity": ([good, "--to", "happy", "--intensity", "1.5", *ck], "intensity"),
        "intensity_nan": ([good, "--to", "happy", "--intensity", "nan", *ck], "intensity"),
        "checkpoint": ([good, "--to", "happy", "--checkpoint", photos / "nope"], "not found"),
        "no_bundled": ([good, "--to", "happy"], "no bundled model exists yet"),
        "overwrite": ([good, "--to", "happy", *ck, "-o", good], "would overwrite an input"),
        "missing_input": ([photos / "gone.jpg", "--to", "happy", *ck], "no such file"),
        "one_bad_of_two": ([good, photos / "cut.jpg", "--to", "happy", *ck], "cut.jpg"),
    }[case]
    if case == "no_bundled":
        from ccyclegan.translate import api as translate

        monkeypatch.setattr(translate, "bundled_model_path", lambda: None)
    before = listing(photos)
    rc, out, err = run(["translate", *argv], capsys)
    assert_clean_error(rc, err, photos, before, what)
    assert "->" not in out  # no line claims a file that was not written


def test_cli_keep_going_and_overwrite(photos, gen_path, capsys, astronaut):
    (photos / "cut.jpg").write_bytes(jpeg_bytes(astronaut)[:4000])
    rc, out, err = run(["translate", photos / "astro.jpg", photos / "cut.jpg", "--to",
                        "happy", "--checkpoint", gen_path, "--keep-going"], capsys)
    assert rc == 1 and "cut.jpg" in err and (photos / "astro_happy.jpg").is_file()
    assert not (photos / "cut_happy.jpg").exists()
    assert "astro_happy.jpg" in out and "cut" not in out  # only what was written is claimed
    assert "1 file written, 1 input failed (exit status 1)" in err.splitlines()[-1]
    data = (photos / "astro.jpg").read_bytes()
    rc, _, err = run(["translate", photos / "astro.jpg", "--to", "happy", "--checkpoint",
                      gen_path, "-o", photos / "astro.jpg", "--overwrite"], capsys)
    assert rc == 0, err
    assert (photos / "astro.jpg").read_bytes() != data


def test_expand_inputs_skips_own_outputs(tmp_path):
    for name in ("a.jpg", "a_happy.jpg", "b_sad.jpg", "a_all_face2.png", "a_sad-angry.jpg",
                 "a_sad-joy.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in expand_inputs([tmp_path])] == ["a.jpg", "a_sad-joy.jpg",
                                                             "b_sad.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(TranslateError, match="no image files"):
        expand_inputs([tmp_path / "empty"])
    with pytest.raises(TranslateError, match="no such file or folder"):
        expand_inputs([tmp_path / "missing"])


def _inductor_cannot_build() -> str:
    """Why inductor fails on a trivial frozen float kernel on this machine ('' when it works):
    a broken C++ toolchain or a full temp disk, told apart from a failure of our compile path."""
    import torch
    import torch._inductor.config as inductor

    from ccyclegan.core.runtime import error_reason

    try:
        with inductor.patch(freezing=True), torch.no_grad():
            torch.compile(lambda x: torch.relu(x) * 2 + 1)(torch.randn(4, 1000))
    except Exception as e:
        return error_reason(e)
    return ""


def test_compiled_generator_matches_eager(tr, gen_path):
    """--compile (inductor with frozen weights) gives eager's numbers, for one face, for the
    batch of 7 the source estimate decodes, and for a batch size it has not seen."""
    import shutil

    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler")
    compiled = ExpressionTranslator.load(gen_path, compile=True)
    if not compiled._backend.compiled:
        toolchain = _inductor_cannot_build()
        if toolchain:  # the machine, not our code: the fallback has its own test below
            pytest.skip(f"inductor cannot build even a one-line kernel here: {toolchain}")
    assert compiled._backend.compiled
    faces = synthetic_faces(1, seed=5).images.numpy()  # [7, 1, 48, 48]
    eye = np.eye(7, dtype=np.float32)
    for n in (1, 7, 3):
        c = eye[np.arange(n) % 7]
        np.testing.assert_allclose(compiled.generate(faces[:n], c), tr.generate(faces[:n], c),
                                   atol=1e-4)
    crops = ((faces[:, 0] + 1) * 127.5).round().astype(np.uint8)
    a, *_ = compiled.edit(crops, ["happy", "sad"], 0.5)
    b, *_ = tr.edit(crops, ["happy", "sad"], 0.5)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_compile_failure_falls_back_to_eager(gen_path, tr, monkeypatch, capsys):
    import torch

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    eager = ExpressionTranslator.load(gen_path, compile=True)
    assert not eager._backend.compiled
    assert "torch.compile failed (no compiler here); running eager PyTorch" in \
        capsys.readouterr().err
    faces = synthetic_faces(1, seed=5).images.numpy()
    c = np.eye(7, dtype=np.float32)
    np.testing.assert_array_equal(eager.generate(faces, c), tr.generate(faces, c))
    with pytest.raises(TranslateError, match="torch backend only"):
        ExpressionTranslator.load(gen_path, backend="onnxruntime", compile=True)


def test_harmonic_fill_keeps_the_border_and_is_harmonic_inside():
    """paste.harmonic_fill solves the discrete Laplace equation: the ring is a's, every inner
    value the mean of its four neighbours; a change minus its fill is zero on the ring and
    keeps a harmonic change's interior at zero (nothing but a smooth ramp is taken out)."""
    rng = np.random.default_rng(0)
    a = rng.normal(0, 20, (48, 48)).astype(np.float32)
    h = harmonic_fill(a)
    ring = np.ones((48, 48), bool)
    ring[1:-1, 1:-1] = False
    assert np.allclose(h[ring], a[ring], atol=1e-4)
    neighbours = (h[:-2, 1:-1] + h[2:, 1:-1] + h[1:-1, :-2] + h[1:-1, 2:]) / 4
    assert np.abs(h[1:-1, 1:-1] - neighbours).max() < 1e-3
    y, x = np.mgrid[0:48, 0:48].astype(np.float32)
    plane = 3.0 * x - 2.0 * y + 5.0  # harmonic: its own fill
    assert np.abs(harmonic_fill(plane) - plane).max() < 1e-2


def test_a_seamless_paste_takes_out_only_what_the_border_needs():
    """seamless: a uniform change (a shift of the whole frame) is its own harmonic fill, so
    nothing of it is pasted and no edge can show; fine detail a couple of pixels from the
    frame's edge survives a narrow fade, where the default 5 % fade takes most of it out;
    outside the frame nothing changes."""
    photo = np.full((260, 260, 3), 120, np.uint8)
    frame = Box(10, 10, 240, 240)
    shift = np.full((48, 48), 30.0, np.float32)
    out = photo.copy()
    paste_edit(out, frame, FaceEdit(shift, None, None, shift), border_fade(48, 0.02),
               seamless=True)
    assert np.abs(out.astype(int) - 120).max() <= 1
    delta = np.zeros((48, 48), np.float32)
    delta[2, 4:44:2] = -40.0  # a fine stripe on the second row in from the edge
    near = crop_face(photo, frame).astype(np.float32)
    kept = {}
    for seamless, ramp in ((False, 0.05), (True, 0.02)):
        out = photo.copy()
        paste_edit(out, frame, FaceEdit(delta, None, None, delta), border_fade(48, ramp),
                   seamless=seamless)
        assert np.array_equal(out[:10], photo[:10]) and np.array_equal(out[:, 250:], photo[:, 250:])
        got = crop_face(out, frame).astype(np.float32) - near
        kept[seamless] = float(np.abs(got[2, 4:44:2] - got[2, 5:45:2]).mean())  # stripe contrast
    assert kept[True] > 1.3 * kept[False] and kept[True] > 20


def test_flow_of_edit_turns_a_move_into_a_move_and_keeps_the_photo_sharp():
    """An edit that moves a dark disc down by 2 pixels of the 48x48 face is recovered as a
    field of about 2 pixels (paint left only where a move cannot explain the change), and the
    48x48 result is the model's exactly. On a 240-pixel photo the flow moves the photo's own
    sharp edge by about 10 pixels and keeps it sharp, where the same edit as paint alone lays
    a blurred copy over it."""
    from ccyclegan.translate.api import warp_face

    yy, xx = np.mgrid[0:240, 0:240]
    photo = np.full((240, 240, 3), 170, np.uint8)
    photo[(yy - 100) ** 2 + (xx - 120) ** 2 < 30 ** 2] = 50  # a sharp disc
    moved = np.full_like(photo, 170)
    moved[(yy - 110) ** 2 + (xx - 120) ** 2 < 30 ** 2] = 50  # 10 photo pixels lower
    frame = Box(0, 0, 240, 240)
    face = crop_face(photo, frame)
    out48 = crop_face(moved, frame).astype(np.float32)
    delta = out48 - face.astype(np.float32)
    edit = flow_of_edit(face, FaceEdit(delta, None, None, delta), parts=False)  # anywhere
    changed = np.abs(delta) > 10
    assert -2.6 < float(np.median(edit.flow[changed, 1])) < -1.4  # sample 2 pixels higher
    assert np.abs(edit.flow[changed, 0]).mean() < 0.4
    assert np.abs(edit.paint[changed]).mean() < 0.4 * np.abs(delta[changed]).mean()
    assert np.allclose(warp_face(face.astype(np.float32), edit.flow) + edit.paint, out48,
                       atol=1e-3)

    def error(e: FaceEdit) -> float:
        """Mean distance to the photo with the disc truly moved, over the disc's edges."""
        out = photo.copy()
        paste_edit(out, frame, e, np.ones((48, 48), np.float32), match=0)
        return float(np.abs(out[60:150, 80:160].astype(np.float32) - moved[60:150, 80:160]).mean())

    assert error(edit) < 1.0  # the photo's own sharp disc, moved
    assert error(FaceEdit(delta, None, None, delta)) > 5.0  # paint: ghost of the old edge, ramps
    assert flow_of_edit(face, edit) is edit  # a field already there stays


def test_a_smoothed_field_is_smoother_and_still_makes_the_edit():
    """flow_of_edit(smooth=S) blurs the field (a fold moves along its whole length instead of
    bending where the field fades) without losing the move or the 48x48 result."""
    from ccyclegan.translate.paste import warp_face

    yy, xx = np.mgrid[0:48, 0:48]
    face = np.where((yy - 20) ** 2 + (xx - 24) ** 2 < 36, 50, 170).astype(np.uint8)
    out48 = np.where((yy - 22) ** 2 + (xx - 24) ** 2 < 36, 50, 170).astype(np.float32)
    delta = out48 - face
    sharp = flow_of_edit(face, FaceEdit(delta, None, None, delta))
    smooth = flow_of_edit(face, FaceEdit(delta, None, None, delta), smooth=2.0)

    def roughness(flow: np.ndarray) -> float:
        return float(np.abs(np.diff(flow, axis=0)).sum() + np.abs(np.diff(flow, axis=1)).sum())

    assert roughness(smooth.flow) < 0.9 * roughness(sharp.flow)  # 0.75 here
    changed = np.abs(delta) > 10
    assert -2.6 < float(np.median(smooth.flow[changed, 1])) < -1.0  # still about 2 pixels
    assert np.allclose(warp_face(face.astype(np.float32), smooth.flow) + smooth.paint, out48,
                       atol=1e-3)


def test_the_move_on_parts_keeps_the_mouth_moving_and_paints_the_cheek(monkeypatch):
    """flow_of_edit(parts=True, the default): a disc moved on the mouth is still moved, one
    moved on a cheek (where a lightened fold reads as a collapsed one) is left to paint; at
    48x48 the result is the model's exactly either way."""
    from ccyclegan.translate.paste import parts_mask, warp_face

    mask = parts_mask()
    assert mask[37, 24] > 0.99 and mask[16, 12] > 0.99 and mask[16, 36] > 0.99  # mouth, eyes
    assert mask[29, 5] < 0.01 and mask[29, 42] < 0.01 and mask[47, 24] < 0.1  # cheeks, chin
    yy, xx = np.mgrid[0:48, 0:48]

    def discs(dy: int) -> np.ndarray:
        mouth = (yy - 36 - dy) ** 2 + (xx - 24) ** 2 < 16
        cheek = (yy - 29 - dy) ** 2 + (xx - 5) ** 2 < 5
        return np.where(mouth | cheek, 50, 170).astype(np.float32)

    face = discs(0).astype(np.uint8)
    delta = discs(2) - face
    edit = FaceEdit(delta, None, None, delta)
    everywhere, on_parts = flow_of_edit(face, edit, parts=False), flow_of_edit(face, edit)
    cheek = (np.abs(delta) > 10) & (xx < 14)
    mouth = (np.abs(delta) > 10) & (np.abs(xx - 24) < 6)
    assert np.abs(everywhere.flow[cheek]).max() > 1.0  # without: the cheek moves too
    assert np.abs(on_parts.flow[cheek]).max() < 0.05
    assert -2.6 < float(np.median(on_parts.flow[mouth, 1])) < -1.4
    for e in (everywhere, on_parts):
        assert np.allclose(warp_face(face.astype(np.float32), e.flow) + e.paint, discs(2),
                           atol=1e-3)
    # paste.PARTS is read at the call, so setting it switches the default (as paste.MOVE)
    monkeypatch.setattr("ccyclegan.translate.paste.PARTS", False)
    np.testing.assert_array_equal(flow_of_edit(face, edit).flow, everywhere.flow)


def test_paint_keeps_the_skins_grain_but_not_a_teeth_edge():
    """Where the model paints anew, the photo's old detail goes, but its finest and faintest
    part (grain of a few grey levels) stays, so a repainted region is not smoother than the
    photo around it; a strong thin edge (the gap between two teeth) still goes."""
    rng = np.random.default_rng(0)
    photo = np.full((192, 192, 3), 150.0)
    photo += rng.normal(0, 4, (192, 192, 1))  # skin's grain
    photo[88:104, 95:97] = 40  # a dark gap between teeth
    photo = np.clip(np.rint(photo), 0, 255).astype(np.uint8)
    frame = Box(0, 0, 192, 192)
    weight = np.zeros((48, 48), np.float32)
    weight[16:32, 12:36] = 1.0
    paint = np.zeros((48, 48), np.float32)
    paint[18:30, 14:34] = -80.0  # repainted darker: all old detail there is painted over
    grain = {}
    for texture in (0.0, 8.0):
        out = photo.copy()
        paste_edit(out, frame, FaceEdit(paint, None, weight), border_fade(48), texture=texture,
                   sharpen=0.0)  # the paint's steepened edge would count as grain near it
        patch = out[76:84, 64:88, 0].astype(np.float32)  # grain only, away from the gap
        grain[texture] = float((patch - cv2_blur(patch)).std())
        gap = np.abs(out[92:100, 95].astype(int) - out[92:100, 91].astype(int)).mean()
        assert gap < 25, (texture, gap)  # the teeth's edge goes either way
    ref = photo[76:84, 64:88, 0].astype(np.float32)
    assert grain[0.0] < 0.5 * float((ref - cv2_blur(ref)).std())  # painted smooth
    assert grain[8.0] > 0.7 * float((ref - cv2_blur(ref)).std())  # grain kept


def cv2_blur(a: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(a, (0, 0), 2.0)


def test_the_translator_pastes_with_the_modules_settings_read_at_the_call(gen_path, astronaut,
                                                                         monkeypatch):
    """paste.SHARPEN, paste.MATCH_ROUNDS and the rest are switches, as paste.MOVE is: setting
    one changes the photos translate() makes from then on (they were bound into paste_edit's
    defaults at import, so setting them did nothing), the same photo as paste_edit given it,
    and as paste_edit called without it (its defaults are the switches, read at the call)."""
    from ccyclegan.translate import paste

    tr = ExpressionTranslator.load(gen_path)
    default = tr.translate_faces(astronaut, to="sad").image()
    monkeypatch.setattr(paste, "SHARPEN", 1.0)
    result = tr.translate_faces(astronaut, to="sad")
    sharpened = result.image()
    assert not np.array_equal(sharpened, default)
    face = result.faces[0]
    by_hand = astronaut.copy()
    paste_edit(by_hand, face.frame, flow_of_edit(face.before, face.edits["sad"]), border_fade(48),
               sharpen=1.0)
    assert np.array_equal(sharpened, by_hand)
    by_default = astronaut.copy()  # paste_edit's own default: the switch, now 1
    paste_edit(by_default, face.frame, flow_of_edit(face.before, face.edits["sad"]),
               border_fade(48))
    assert np.array_equal(sharpened, by_default)
    given = astronaut.copy()  # a setting given wins over the switch
    paste_edit(given, face.frame, flow_of_edit(face.before, face.edits["sad"]), border_fade(48),
               sharpen=0.0)
    assert np.array_equal(given, default)
    monkeypatch.setattr(paste, "SHARPEN", 0.0)
    monkeypatch.setattr(paste, "MATCH_ROUNDS", 0)
    assert not np.array_equal(tr.translate_faces(astronaut, to="sad").image(), default)


def _rolled(photo: np.ndarray, angle: float) -> np.ndarray:
    import cv2

    h, w = photo.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(photo, turn, (w, h), borderMode=cv2.BORDER_REFLECT)


def test_a_rolled_face_is_found_rolled_and_cropped_upright(astronaut):
    """face_roll reads the eye line through the eye cascade on turned copies: the astronaut
    turned by 12 degrees either way is read within 2.5 degrees of it; crop_face with that roll
    gives her face upright again, as the unturned photo's crop; nothing to read, 0."""
    from ccyclegan.translate.faces import face_roll, turned_region

    frame = frame_box(detect_faces(astronaut)[0])
    own = face_roll(astronaut, frame)
    assert abs(own) < 5.0  # she stands nearly upright
    upright = crop_face(astronaut, frame).astype(float)
    for angle in (12.0, -12.0):
        photo = _rolled(astronaut, angle)
        f = frame_box(detect_faces(photo)[0])
        roll = face_roll(photo, f)
        assert abs(roll - own + angle) < 2.5, (angle, roll, own)
        turned = crop_face(photo, f, roll=roll - own).astype(float)
        assert np.corrcoef(turned.ravel(), upright.ravel())[0, 1] > 0.8
        assert np.corrcoef(crop_face(photo, f).astype(float).ravel(),
                           upright.ravel())[0, 1] < np.corrcoef(turned.ravel(),
                                                                upright.ravel())[0, 1]
    assert face_roll(np.full((200, 200, 3), 128, np.uint8), Box(50, 50, 100, 100)) == 0.0
    assert np.array_equal(turned_region(astronaut, frame, 0.0), astronaut[
        frame.y:frame.y + frame.h, frame.x:frame.x + frame.w])


def test_a_rolled_face_is_edited_upright_and_turned_back(tr, astronaut, monkeypatch):
    """With faces.TURN (off by default) the translator crops a face rolled by ROLL_MIN or
    more upright (FaceResult.roll) and pastes its edit turned back (paste_turned): pixels
    beyond the turned frame keep their values, a zero edit changes nothing, and with
    faces.TURN off it is edited as it stands."""
    from ccyclegan.translate import faces as faces_module
    from ccyclegan.translate.paste import paste_turned

    monkeypatch.setattr(faces_module, "TURN", True)
    photo = _rolled(astronaut, -12.0)
    result = tr.translate_faces(photo, to="sad")
    face = result.faces[0]
    assert abs(face.roll) >= faces_module.ROLL_MIN
    out = result.image()
    f = face.frame
    reach = int(np.ceil(f.w * (np.sqrt(2) - 1) / 2)) + 2  # a turned square's corners
    mask = np.ones(photo.shape[:2], bool)
    mask[max(f.y - reach, 0):f.y + f.h + reach, max(f.x - reach, 0):f.x + f.w + reach] = False
    assert np.array_equal(out[mask], photo[mask]) and not np.array_equal(out, photo)
    same = photo.copy()
    paste_turned(same, f, face.roll, FaceEdit(np.zeros((48, 48), np.float32)), border_fade(48))
    assert np.array_equal(same, photo)
    monkeypatch.setattr(faces_module, "TURN", False)
    flat = tr.translate_faces(photo, to="sad")
    assert flat.faces[0].roll == 0.0 and not np.array_equal(flat.image(), out)
