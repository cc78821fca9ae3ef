"""Edits as a user gets them: whole photos, judged at their own resolution.

For every face the translator edits and every target, the whole photo is translated; then the
face is found again in the output by a detector path independent of the one that edited it
(dlib's HOG detector and its 5-point landmarks, not OpenCV's Haar cascades), framed as FER2013
frames faces (from the landmarks: FER_EYE_SPAN, FER_EYE_NOSE, FER_EYES_Y) and read by the
judges. Beside it: the same judges on the model's own 48x48 outputs (the gap is what the
paste-back loses), the same person by dlib's descriptor on its standard 150-pixel chip from the
full photo (the regime it was made for), and the sharpness of the face region (variance of the
Laplacian, output over input). Needs the eval extra (dlib and its model files).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccyclegan.classifier.nets import predict
from ccyclegan.core.data import EMOTIONS, normalize
from ccyclegan.evaluate.identity import (
    CHIP_PADDING,
    CHIP_SIZE,
    DLIB_THRESHOLD,
    LANDMARK_FILE,
    RECOGNITION_FILE,
    IdentityModelError,
    _dlib,
    default_model_dir,
)
from ccyclegan.evaluate.metrics import GRIN_CLOSERS, mouth_composite
from ccyclegan.translate.faces import MIN_FACE, Box, NoFaceError, crop_face, luma, read_image
from ccyclegan.translate.paste import luma_f

__all__ = ["FaceRecord", "PhotoReader", "colourfulness", "compare", "face_bootstrap", "grin",
           "laplacian_variance", "sharpness",
           "summarize", "translate_and_judge"]

# FER2013's framing in landmark terms, measured on 593 PublicTest faces (upscaled 4x, padded;
# dlib's HOG box and 5-point landmarks; medians): the distance between the eye centres is
# 0.362 of the frame's side, from the eyes' midpoint to the nose 0.272, and the eyes' midpoint
# sits 0.102 of the side above the frame's centre (0.001 left of it: none).
FER_EYE_SPAN = 0.362
FER_EYE_NOSE = 0.272
FER_EYES_Y = -0.102
MAX_UPSAMPLED = 4_000_000  # HOG searches the photo upsampled up to this many pixels


@dataclass(frozen=True)
class Landmarks:
    """A face found by the independent path: its HOG box and 5 landmarks (x, y) in pixels."""

    rect: Any  # dlib.rectangle
    points: np.ndarray  # [5, 2]: two corners of each eye, then the base of the nose

    @property
    def eyes(self) -> np.ndarray:
        return self.points[:4].mean(0)

    def fer_frame(self) -> Box:
        """The square FER2013-style frame, from the eyes and nose (scale: the mean of what
        the eye distance and the eye-nose distance each say, so a turned or tilted head is not
        framed too tight)."""
        p = self.points
        span = float(np.linalg.norm(p[0:2].mean(0) - p[2:4].mean(0)))
        down = float(np.linalg.norm(p[4] - self.eyes))
        side = max(8.0, 0.5 * (span / FER_EYE_SPAN + down / FER_EYE_NOSE))
        cx, cy = self.eyes[0], self.eyes[1] - FER_EYES_Y * side
        return Box(round(cx - side / 2), round(cy - side / 2), round(side), round(side))


class PhotoReader:
    """dlib's HOG face detector, 5-point landmarks and 128-d descriptor on whole photos."""

    def __init__(self, model_dir: str | Path | None = None):
        folder = default_model_dir() if model_dir is None else Path(model_dir)
        missing = [n for n in (LANDMARK_FILE, RECOGNITION_FILE) if not (folder / n).is_file()]
        if missing:
            raise IdentityModelError(f"{folder}: no {' or '.join(missing)} there")
        self._dlib = dlib = _dlib()
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(folder / LANDMARK_FILE))
        self._rec = dlib.face_recognition_model_v1(str(folder / RECOGNITION_FILE))

    def find(self, pixels: np.ndarray) -> list[Landmarks]:
        """Every frontal face, upsampled (up to twice) so faces down to ~20 pixels are found."""
        rgb = _rgb(pixels)
        ups = 0
        while ups < 2 and rgb.shape[0] * rgb.shape[1] * 4 ** (ups + 1) <= MAX_UPSAMPLED:
            ups += 1
        faces = []
        for rect in self._detector(rgb, ups):
            shape = self._landmarks(rgb, rect)
            pts = np.array([(shape.part(k).x, shape.part(k).y) for k in range(5)], np.float64)
            faces.append(Landmarks(rect, pts))
        return faces

    def descriptor(self, pixels: np.ndarray, face: Landmarks) -> np.ndarray:
        """dlib's descriptor of the face, on its aligned 150-pixel chip from the photo."""
        rgb = _rgb(pixels)
        shape = self._landmarks(rgb, face.rect)
        chip = self._dlib.get_face_chip(rgb, shape, CHIP_SIZE, CHIP_PADDING)
        return np.asarray(self._rec.compute_face_descriptor(chip), np.float32)


def _rgb(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, 2))


def match(frame: Box, found: Iterable[Landmarks]) -> Landmarks | None:
    """The found face whose eyes lie in the central half of the edited frame, nearest its
    centre; None if there is none (the face was lost)."""
    cx, cy = frame.x + frame.w / 2, frame.y + frame.h / 2
    best, best_d = None, None
    for face in found:
        dx, dy = face.eyes[0] - cx, face.eyes[1] - cy
        if abs(dx) < frame.w / 4 and abs(dy) < frame.h / 4:
            d = dx * dx + dy * dy
            if best_d is None or d < best_d:
                best, best_d = face, d
    return best


def sharpness(pixels: np.ndarray, frame: Box) -> float:
    """Variance of the Laplacian of the frame's grey region (the part inside the photo)."""
    return laplacian_variance(luma(_inside(pixels, frame)))


def _inside(pixels: np.ndarray, frame: Box) -> np.ndarray:
    """The part of the frame inside the photo."""
    h, w = pixels.shape[:2]
    x0, y0 = max(frame.x, 0), max(frame.y, 0)
    x1, y1 = min(frame.x + frame.w, w), min(frame.y + frame.h, h)
    return pixels[y0:y1, x0:x1]


def colourfulness(pixels: np.ndarray, frame: Box) -> float | None:
    """The frame's mean chroma (BT.601 Cb, Cr magnitude) over its mean luminance plus 16: how
    colourful the face region looks, lighter or darker; None for a grey photo (no chroma to
    keep)."""
    if pixels.ndim != 3:
        return None
    rgb = _inside(pixels, frame).astype(np.float64)
    y = luma_f(rgb)
    cb, cr = 0.564 * (rgb[..., 2] - y), 0.713 * (rgb[..., 0] - y)
    chroma = float(np.sqrt(cb * cb + cr * cr).mean())
    return None if chroma < 0.5 else chroma / (float(y.mean()) + 16.0)


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the Laplacian of a grey image: sharpness's measure."""
    import cv2

    return float(cv2.Laplacian(np.asarray(grey, np.float64), cv2.CV_64F).var())


@dataclass
class FaceRecord:
    """One edited face of one photo, in every target."""

    photo: str
    index: int  # the face's index among the photo's edited faces
    frame: Box  # the frame the translator edited
    side: int  # the face's size in the photo (frame side, pixels)
    before: np.ndarray  # 48x48: the input as the judges see it (independent framing)
    model: dict[str, np.ndarray]  # target -> the model's own 48x48 output
    photo_crop: dict[str, np.ndarray | None]  # target -> the output photo's face, re-found
    distance: dict[str, float | None]  # target -> dlib distance, input vs output photo
    sharpness: dict[str, float]  # target -> output / input variance of the Laplacian
    # target -> the output photo's face in the frame the translator edited, as its crop was
    # cut: what the paste alone loses, without the independent framing's share
    edit_frame: dict[str, np.ndarray] = field(default_factory=dict)
    # the independent path's FER2013 frame of the input face: how the two framings differ
    reader_frame: Box | None = None
    model_input: np.ndarray | None = None  # 48x48: what the model saw (the translator's frame)
    # target -> output / input colourfulness of the face region (None: a grey photo)
    colour: dict[str, float | None] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def translate_and_judge(translator, photos: Sequence[str | Path], reader: PhotoReader,
                        targets: Sequence[str] = EMOTIONS, intensity: float = 1.0,
                        keep_images: bool = False, paste=None
                        ) -> tuple[list[FaceRecord], dict[str, Any]]:
    """Translate every photo to every target and collect what the judges will read. paste
    (result, emotion) -> pixels makes the edited photo (default: the translator's own,
    TranslationResult.image), so other ways of pasting can be measured on the same edits.

    Faces the independent path does not find in the input photo cannot be judged: they are
    counted (info["not_judged"]), not scored. A face found in the input but not in an output
    keeps None there and counts as a miss."""
    records: list[FaceRecord] = []
    info: dict[str, Any] = {"photos": 0, "no_face": [], "faces_edited": 0, "not_judged": 0}
    for path in photos:
        info["photos"] += 1
        pic = read_image(path)
        try:
            result = translator.translate_picture(pic, tuple(targets), intensity, True, MIN_FACE,
                                                  str(path))
        except NoFaceError:
            info["no_face"].append(Path(path).name)
            continue
        info["faces_edited"] += len(result.faces)
        original = pic.pixels
        found_in = reader.find(original)
        outputs = {t: (paste or type(result).image)(result, t) for t in targets}
        found_out = {t: reader.find(outputs[t]) for t in targets}
        for i, face in enumerate(result.faces):
            src = match(face.frame, found_in)
            if src is None:
                info["not_judged"] += 1
                continue
            desc_in = reader.descriptor(original, src)
            sharp_in = sharpness(original, face.frame)
            colour_in = colourfulness(original, face.frame)
            fer = src.fer_frame()
            rec = FaceRecord(Path(path).name, i, face.frame, face.frame.w,
                             crop_face(original, fer), dict(face.after), {}, {}, {},
                             reader_frame=fer, model_input=face.before)
            for t in targets:
                out = outputs[t]
                hit = match(face.frame, found_out[t])
                rec.photo_crop[t] = None if hit is None else crop_face(out, hit.fer_frame())
                rec.edit_frame[t] = crop_face(out, face.frame, roll=face.roll)
                rec.distance[t] = (None if hit is None else float(
                    np.linalg.norm(reader.descriptor(out, hit) - desc_in)))
                rec.sharpness[t] = sharpness(out, face.frame) / max(sharp_in, 1e-9)
                colour_out = colourfulness(out, face.frame)
                rec.colour[t] = (None if colour_in is None or colour_out is None
                                 else colour_out / colour_in)
                if keep_images:
                    rec.images[t] = out
            if keep_images:
                rec.images["input"] = original
            records.append(rec)
    return records, info


# face sizes (frame side in the photo, pixels) of summarize's breakdown: where the paste loses
# its points (a face under 64 pixels has less to show than the 48x48 edit made)
SIZE_BANDS = ((0, 64), (64, 128), (128, 0))


def summarize(records: Sequence[FaceRecord], judges: dict[str, torch.nn.Module],
              targets: Sequence[str] = EMOTIONS) -> dict[str, Any]:
    """Per judge: the share of translations read as their target on the photo and on the
    model's 48x48 output, overall and per target, and for the unedited input (doing nothing);
    the photo also cut in the translator's own frame (edit_frame: the paste's share of the gap,
    without the independent framing's); the same person at full resolution; the sharpness
    ratio; the readings by face size."""
    pairs = [(r, t) for r in records for t in targets]
    if not pairs:
        raise ValueError("no judged faces: nothing to summarize")
    face_of = np.array([i for i, r in enumerate(records) for _ in targets])
    tgt = np.array([EMOTIONS.index(t) for _, t in pairs])
    blank = np.zeros((48, 48), np.uint8)
    found = np.array([r.photo_crop[t] is not None for r, t in pairs])
    stacks = {
        "photo": [r.photo_crop[t] if r.photo_crop[t] is not None else blank for r, t in pairs],
        "edit_frame": [r.edit_frame[t] for r, t in pairs],
        "crop": [r.model[t] for r, t in pairs],
        "input": [r.before for r, t in pairs],
    }
    side = np.array([r.side for r, _ in pairs])
    bands = {f"{lo}-{hi - 1}" if hi else f">={lo}": (side >= lo) & ((side < hi) if hi else True)
             for lo, hi in SIZE_BANDS}
    out: dict[str, Any] = {"faces": len(records), "translations": len(pairs),
                           "found_again": float(found.mean()), "judges": {},
                           "translations_by_size": {b: int(m.sum()) for b, m in bands.items()},
                           "pairs": [f"{r.photo}:{r.index}:{t}" for r, t in pairs]}
    for name, model in judges.items():
        res: dict[str, Any] = {"by_size": {}}
        for kind, faces in stacks.items():
            x = torch.from_numpy(np.stack(faces))[:, None]
            hit = predict(model, x).argmax(1).numpy() == tgt
            if kind == "photo":
                hit &= found  # a face lost in the output is a miss
            res[kind] = {"overall": float(hit.mean()),
                         **{t: float(hit[tgt == EMOTIONS.index(t)].mean()) for t in targets}}
            if kind == "photo":  # for compare(), and how much the figure owes to which faces
                res["photo_hits"] = hit.astype(int).tolist()
                res[kind]["ci95"] = face_bootstrap(hit.astype(float), face_of)
            res["by_size"][kind] = {b: float(hit[m].mean()) if m.any() else None
                                    for b, m in bands.items()}
        out["judges"][name] = res
    dist = np.array([r.distance[t] for r, t in pairs if r.distance[t] is not None])
    sharp = np.array([r.sharpness[t] for r, t in pairs])
    out["same_person"] = float((dist < DLIB_THRESHOLD).mean()) if len(dist) else None
    out["same_person_by_target"] = {
        t: float(np.mean([r.distance[t] < DLIB_THRESHOLD for r in records
                          if r.distance[t] is not None] or [np.nan])) for t in targets}
    out["median_distance"] = float(np.median(dist)) if len(dist) else None
    out["sharpness"] = {"mean": float(sharp.mean()), "median": float(np.median(sharp)),
                        "min": float(sharp.min()),
                        "share_at_least_0.9": float((sharp >= 0.9).mean())}
    out["sharpness_by_target"] = {t: float(np.mean([r.sharpness[t] for r in records]))
                                  for t in targets}
    out["sharpness_by_size"] = {
        b: None if not m.any() else {"overall": float(sharp[m].mean()), **{
            t: float(sharp[m & (tgt == EMOTIONS.index(t))].mean()) for t in targets}}
        for b, m in bands.items()}
    # the same ratio for the model's own 48x48 output against its input: how much of the
    # photo's softness the generator brings (a disgust it paints smoother, say) and the paste
    # only passes on
    own = [(r, max(laplacian_variance(r.model_input), 1e-9)) for r in records
           if r.model_input is not None]
    crop = {t: [laplacian_variance(r.model[t]) / base for r, base in own] for t in targets}
    out["crop_sharpness_by_target"] = {t: float(np.mean(v)) if v else None
                                       for t, v in crop.items()}
    colour = {t: [r.colour[t] for r in records if r.colour.get(t) is not None] for t in targets}
    out["colour_by_target"] = {t: float(np.mean(v)) if v else None for t, v in colour.items()}
    out["framing"] = framing(records)
    out["grin"] = grin(records, judges, targets)
    return out


def face_bootstrap(values: np.ndarray, faces: np.ndarray, draws: int = 2000, seed: int = 0
                   ) -> list[float]:
    """The 95 % interval of values' mean when the faces (one id per value) are drawn again
    with replacement: how much a figure owes to which faces happened to be in the photos."""
    ids, inverse = np.unique(faces, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(ids))
    counts = np.bincount(inverse, minlength=len(ids))
    pick = np.random.default_rng(seed).integers(0, len(ids), (draws, len(ids)))
    means = sums[pick].sum(1) / counts[pick].sum(1)
    return [float(v) for v in np.percentile(means, [2.5, 97.5])]


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Two summaries of the same translations (same photos, faces and targets), paired, per
    judge both have: the translations whose photo a reads as the target and b does not
    (gained) and the reverse (lost); the exact two-sided McNemar p (a binomial test on those
    two counts); the difference in the photo's reading and its 95 % interval over faces. An
    imperceptible change to the paste moves a few translations that sit on a judge's boundary
    (experiments/photo_release/), which is what p and the interval put in proportion."""
    if not a.get("pairs") or a.get("pairs") != b.get("pairs"):
        raise ValueError("the two summaries are not of the same translations (their photos, "
                         "faces or targets differ, or one predates the pairs it keeps)")
    faces = np.array([p.rsplit(":", 1)[0] for p in a["pairs"]])
    out = {}
    for judge in [j for j in a["judges"] if j in b["judges"]]:
        ha, hb = (np.array(s["judges"][judge]["photo_hits"], bool) for s in (a, b))
        gained, lost = int((ha & ~hb).sum()), int((~ha & hb).sum())
        n, k = gained + lost, min(gained, lost)
        p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
        out[judge] = {"gained": gained, "lost": lost, "p": p,
                      "difference": float(ha.mean() - hb.mean()),
                      "ci95": face_bootstrap(ha.astype(float) - hb, faces)}
    return out


def grin(records: Sequence[FaceRecord], judges: dict[str, torch.nn.Module],
         targets: Sequence[str] = EMOTIONS) -> dict[str, Any] | None:
    """Does a smile close? Faces whose unedited photo the first judge reads happy, turned to
    each of GRIN_CLOSERS: per judge, the share whose mouth still reads happy under the face's
    own upper half (metrics.mouth_composite), on the edited photo (independent framing, input
    and output alike; a face lost in the output counts as a smile kept) and on the model's
    48x48 output (under its own input). Lower is better; the unedited face reads 100 % by the
    first judge by construction. None if no face smiles or no such target was translated."""
    closers = [t for t in GRIN_CLOSERS if t in targets]
    if not closers or not records:
        return None
    happy = EMOTIONS.index("happy")
    first = next(iter(judges.values()))
    read = predict(first, _batch([r.before for r in records])).argmax(1).tolist()
    smiling = [r for r, p in zip(records, read, strict=True) if p == happy]
    if not smiling:
        return None
    # per kind: the faces the mouths go under, and each target's mouths
    composites = {
        "photo": (_batch([r.before for r in smiling]), {t: _batch([
            r.before if r.photo_crop[t] is None else r.photo_crop[t] for r in smiling])
            for t in closers}),
        "crop": (_batch([r.model_input for r in smiling]),
                 {t: _batch([r.model[t] for r in smiling]) for t in closers}),
    }
    out: dict[str, Any] = {"faces": len(smiling), "targets": closers, "judges": {}}
    for name, model in judges.items():
        res = out["judges"][name] = {}
        for kind, (src, mouths) in composites.items():
            kept = {t: float((predict(model, mouth_composite(src, mouths[t])).argmax(1)
                              == happy).float().mean()) for t in closers}
            res[kind] = {"overall": float(np.mean(list(kept.values()))), **kept}
    return out


def _batch(faces: Sequence[np.ndarray]) -> torch.Tensor:
    """48x48 uint8 faces -> [N, 1, 48, 48] in [-1, 1], as the judges read them."""
    return normalize(torch.from_numpy(np.stack(faces))[:, None])


def framing(records: Sequence[FaceRecord]) -> dict[str, Any] | None:
    """The independent path's frame against the translator's: side ratio and centre offset
    (a share of the translator's side, + right / down), quartiles over the faces."""
    pairs = [(r.frame, r.reader_frame) for r in records if r.reader_frame is not None]
    if not pairs:
        return None
    ratio = [b.w / a.w for a, b in pairs]
    dx = [((b.x + b.w / 2) - (a.x + a.w / 2)) / a.w for a, b in pairs]
    dy = [((b.y + b.h / 2) - (a.y + a.h / 2)) / a.w for a, b in pairs]

    def q(v: list[float]) -> list[float]:
        return [round(float(x), 3) for x in np.percentile(v, [25, 50, 75])]

    return {"faces": len(pairs), "side_ratio_q1_median_q3": q(ratio),
            "dx_q1_median_q3": q(dx), "dy_q1_median_q3": q(dy)}
