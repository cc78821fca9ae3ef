"""A tilted face, edited as it is and edited upright: what in-plane alignment would change.

The translator frames faces as they stand in the photo; FER2013's faces are upright (roughly).
Here the photo is turned about the face's centre by its roll (from dlib's eye landmarks: the
evaluation extra's independent path, used as an oracle), translated with the package's own
paste, and only the change is turned back and added to the photo. Rows: as it is, upright.
Also prints how well three estimators that need no dlib recover that roll on every face of
the photos: OpenCV's eye cascade, the angle that makes the face most left-right symmetric, and
the package's faces.face_roll (the eye cascade on turned copies of the face).

    python experiments/photo_release/tilt_figure.py ../shared/data/photos/2008_002506.jpg \
        --face 0 -o experiments/photo_release/tilt.jpg [--estimators ../shared/data/photos]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ccyclegan.evaluate.photos import PhotoReader, match
from ccyclegan.translate import ExpressionTranslator
from ccyclegan.translate.faces import Box, NoFaceError, face_roll, luma
from ccyclegan.translate.inputs import read_image

TARGETS = ("disgust", "fear", "surprise", "sad", "neutral")


def roll(reader: PhotoReader, pixels: np.ndarray, frame: Box) -> float | None:
    """The face's roll in degrees (the eye line against the horizontal; OpenCV's sense), from
    dlib's landmarks; None if the independent path does not find it."""
    lm = match(frame, reader.find(pixels))
    if lm is None:
        return None
    a, b = sorted((lm.points[0:2].mean(0), lm.points[2:4].mean(0)), key=lambda p: p[0])
    return float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))


def upright_edit(tr, pixels: np.ndarray, frame: Box, angle: float, target: str) -> np.ndarray:
    """The photo with the face edited upright: turned by angle about the frame's centre,
    translated, and the change turned back (the photo's other pixels are not resampled)."""
    h, w = pixels.shape[:2]
    centre = (frame.x + frame.w / 2, frame.y + frame.h / 2)
    turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
    upright = cv2.warpAffine(pixels, turn, (w, h), flags=cv2.INTER_LANCZOS4,
                             borderMode=cv2.BORDER_REFLECT)
    result = tr.translate_faces(upright, to=target)
    change = result.image(target).astype(np.float32) - upright
    change = cv2.warpAffine(change, cv2.getRotationMatrix2D(centre, -angle, 1.0), (w, h),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return np.clip(np.rint(pixels + change), 0, 255).astype(np.uint8)


def symmetric_roll(grey: np.ndarray, frame: Box, size: int = 64) -> float:
    """The roll (-30 to 30 degrees, steps of 1.5) at which the face's detail is most
    left-right symmetric."""
    centre = (frame.x + frame.w / 2, frame.y + frame.h / 2)
    best = (-2.0, 0.0)
    for a in np.arange(-30, 31, 1.5):
        m = cv2.getRotationMatrix2D(centre, float(a), size / frame.w)
        m[0, 2] += size / 2 - centre[0]
        m[1, 2] += size / 2 - centre[1]
        patch = cv2.warpAffine(grey, m, (size, size), flags=cv2.INTER_AREA,
                               borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        k = int(size * 0.15)
        patch = patch[k:size - k, k:size - k]
        detail = patch - cv2.GaussianBlur(patch, (0, 0), 6)
        best = max(best, (float(np.corrcoef(detail.ravel(), detail[:, ::-1].ravel())[0, 1]),
                          float(a)))
    return best[1]


def cascade_roll(grey: np.ndarray, frame: Box) -> float | None:
    """The roll from OpenCV's eye cascade on the upper face (the two largest eyes), or None."""
    eye = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")
    roi = grey[max(frame.y, 0):frame.y + 6 * frame.h // 10, max(frame.x, 0):frame.x + frame.w]
    found = eye.detectMultiScale(roi, 1.1, 3, minSize=(max(4, frame.w // 10),) * 2)
    if len(found) < 2:
        return None
    (x1, y1, w1, h1), (x2, y2, w2, h2) = sorted(sorted(found, key=lambda e: -e[2])[:2],
                                                key=lambda e: e[0])
    return float(np.degrees(np.arctan2(y2 + h2 / 2 - y1 - h1 / 2, x2 + w2 / 2 - x1 - w1 / 2)))


def estimators(tr, reader: PhotoReader, folder: Path) -> None:
    truth, sym, casc, turned = [], [], [], []
    for path in sorted(folder.glob("*.jpg")):
        pixels = read_image(path).pixels
        try:
            faces = tr.translate_faces(pixels, to="happy").faces
        except NoFaceError:
            continue
        grey = luma(pixels)
        for face in faces:
            t = roll(reader, pixels, face.frame)
            if t is not None:
                truth.append(t)
                sym.append(symmetric_roll(grey, face.frame))
                casc.append(cascade_roll(grey, face.frame))
                turned.append(face_roll(pixels, face.frame))
    t, s = np.array(truth), np.array(sym)
    tilted = np.abs(t) > 10
    print(f"{len(t)} faces, {int(tilted.sum())} rolled over 10 degrees (dlib's eyes)")
    err = np.abs(t - s)
    print(f"symmetry: mean error {err.mean():.1f} degrees, {err[tilted].mean():.1f} on the "
          f"rolled ones, {int((err > 8).sum())} off by over 8")
    pairs = [(a, b) for a, b in zip(truth, casc, strict=True) if b is not None]
    err = np.abs(np.array([a - b for a, b in pairs]))
    rolled = sum(abs(a) > 10 for a, _ in pairs)
    print(f"eye cascade: finds two eyes on {len(pairs)} faces ({rolled} of the rolled ones), "
          f"mean error {err.mean():.1f} degrees, {int((err > 8).sum())} off by over 8")
    pairs = [(a, b) for a, b in zip(truth, turned, strict=True) if b != 0.0]
    err = np.abs(np.array([a - b for a, b in pairs]))
    rolled = sum(abs(a) > 10 for a, _ in pairs)
    print(f"faces.face_roll (the cascade on turned copies): answers {len(pairs)} faces ({rolled} "
          f"of the rolled ones), mean error {err.mean():.1f} degrees, largest {err.max():.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("photo")
    p.add_argument("--face", type=int, default=0)
    p.add_argument("-o", "--out", default="experiments/photo_release/tilt.jpg")
    p.add_argument("--estimators", metavar="FOLDER", help="also compare the roll estimators")
    a = p.parse_args()
    tr, reader = ExpressionTranslator.load(), PhotoReader()
    pixels = read_image(a.photo).pixels
    result = tr.translate_faces(pixels, to="all")
    frame = result.faces[a.face].frame
    angle = roll(reader, pixels, frame)
    if angle is None:
        raise SystemExit(f"{a.photo}: dlib does not find face {a.face}")
    h, w = pixels.shape[:2]
    cut = np.s_[max(frame.y, 0):min(frame.y + frame.h, h),
                max(frame.x, 0):min(frame.x + frame.w, w)]
    rows = [[pixels[cut]] + [result.image(t)[cut] for t in TARGETS],
            [pixels[cut]] + [upright_edit(tr, pixels, frame, angle, t)[cut] for t in TARGETS]]
    figure = np.concatenate([np.concatenate(r, 1) for r in rows], 0)
    img = Image.fromarray(figure)
    img = img.resize((img.width * 3, img.height * 3), Image.Resampling.LANCZOS)
    img.save(a.out, quality=92)
    print(f"wrote {a.out}: roll {angle:.1f} degrees; columns input, {', '.join(TARGETS)}; rows "
          "as it is, upright")
    if a.estimators:
        estimators(tr, reader, Path(a.estimators))


if __name__ == "__main__":
    main()
