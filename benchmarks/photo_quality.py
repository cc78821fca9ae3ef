"""The photo benchmark: every face of the photos in a folder, in every emotion, judged as the
user gets it (whole photo, its own resolution) and beside the model's own 48x48 output.

    python benchmarks/photo_quality.py [--photos ../shared/data/photos] [--judge RUN ...]
        [--model FILE ...] [--paste model|gate:T+match:N+fade:R|legacy] [--frame-scale S]
        [--turn]
        [--against SUMMARY.json] [--out runs/photo_quality]

Judges: those the package ships, unless given. Pastes: `model` (the translator's own:
paste.paste_edit as translate calls it), `gate:T` (old detail kept where the paint changes
less than T grey levels; `gate:off`: taken out wherever painted), `match:N` (N rounds of
back-projection, so that the photo seen at 48x48 shows the faded 48x48 result), `fade:R` (the
border ramp, a share of the side), `seamless:0|1` (the change less its harmonic fill from the
frame's border), `flow:W` (the edit applied as a move where a move explains it:
paste.flow_of_edit with window W, `flow:0` for paint alone; `maxflow:L`, `dead:D` its
longest and shortest vectors, `changed:C` where it is kept, `changed:0` everywhere,
`smooth:S` its Gaussian blur, pixels of the 48x48 face, `parts:0|1` the field kept only on
the mouth, eyes and brows: paste.parts_mask),
`unblur:S` (the share S of the input's fine detail that the model's edit only blurs given back:
a rejected candidate, `unblurred`; `+grain:G` only its part of local RMS under G, rejected too),
`texture:T` (the old detail's faint grain, local RMS under T, kept under paint; 0: none),
`guide:E` (the paint upsampled by the guided filter, the photo's luminance as guide), `cgate:T`
(the colour around taken only in the share |paint| / T of a painted pixel; `cgate:off`:
wherever painted), `sharpen:K` (the unsharp mask of the paint and back-projection's
corrections before they are enlarged, amount K; 0: off), `shade:S` (the chroma scaled by the
luminance's change to the power S; 0: off), joined with `+`
(`gate:off+match:0+fade:0.1+seamless:0+flow:0+texture:0+cgate:off`: the paste before these
defaults);
`legacy` (the paste before paste_edit: the 48x48 change added
to the luminance under a fixed soft ellipse, reproduced here to measure it). Writes
<out>/<model>__<paste>.json (the summary of ccyclegan.evaluate.photos.summarize) and prints a
table per model and paste: photo
vs crop accuracy per target for each judge, same person (dlib, 150-pixel chip, 0.6),
sharpness ratio of the face region, and whether a grin closes (of the faces the first judge
reads happy unedited, turned angry, sad and neutral: the share whose mouth, under the face's
own upper half, still reads happy; evaluate.photos.grin), with the photo reading's 95 %
interval when the faces are drawn again; with --against, each paste paired with another run
of the same photos (evaluate.photos.compare: translations gained and lost, McNemar p). On
these 385 translations a change too small to see moves a few of them: a point is noise
(experiments/photo_release/).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ccyclegan.classifier import load_classifier
from ccyclegan.core.checkpoint import BUNDLED_JUDGE, BUNDLED_SECOND_JUDGE, bundled_model_path
from ccyclegan.core.data import EMOTIONS
from ccyclegan.evaluate.photos import PhotoReader, compare, summarize, translate_and_judge
from ccyclegan.translate import ExpressionTranslator, api
from ccyclegan.translate import faces as faces_module
from ccyclegan.translate import paste as paste_module
from ccyclegan.translate.faces import FACE_SIZE, FRAME_SCALE, frame_box
from ccyclegan.translate.paste import border_fade, flow_of_edit, paste_turned

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
KEYS = ("gate", "match", "fade", "seamless", "flow", "maxflow", "dead", "changed", "smooth",
        "texture", "cgate", "guide", "parts", "unblur", "grain", "sharpen", "shade")


def legacy_mask(size: int = FACE_SIZE) -> np.ndarray:
    """The paste before paste_edit: a soft ellipse, 1 within 0.29 of the side from the centre,
    smoothstep to 0 at 0.47 of it (faces.face_mask of commit cba59ad)."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    r = np.sqrt((t[None, :] / 0.47) ** 2 + (t[:, None] / 0.47) ** 2)
    u = np.clip((1.0 - r) / (1.0 - 0.62), 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def legacy_paste(result, emotion: str) -> np.ndarray:
    """The 48x48 change, upsampled (bicubic) and added to R, G and B alike under the ellipse."""
    import cv2

    pixels = result.original.pixels.copy()
    for face in result.faces:
        f = face.frame
        d = cv2.resize(face.delta[emotion], (f.w, f.h), interpolation=cv2.INTER_CUBIC
                       if f.w > FACE_SIZE else cv2.INTER_AREA)
        m = cv2.resize(legacy_mask(), (f.w, f.h), interpolation=cv2.INTER_LINEAR
                       if f.w > FACE_SIZE else cv2.INTER_AREA)
        h, w = pixels.shape[:2]
        x0, y0, x1, y1 = max(f.x, 0), max(f.y, 0), min(f.x + f.w, w), min(f.y + f.h, h)
        dm = (d * m)[y0 - f.y:y1 - f.y, x0 - f.x:x1 - f.x]
        roi = pixels[y0:y1, x0:x1]
        if roi.ndim == 3:
            dm = dm[:, :, None]
        roi[...] = np.clip(np.rint(roi.astype(np.float32) + dm), 0, 255).astype(np.uint8)
    return pixels


def unblurred(face: np.ndarray, edit, share: float, grain: float = 0.0):
    """A measured and rejected candidate (experiments/photo_release/): the share of the
    input's fine detail (its 1-pixel high-pass, after the move) that the model's edit takes out
    where it only blurs it (the edit's own high-pass, projected on the input's over 3x3
    windows) given back, in the paint and in the 48x48 result the photo is matched to."""
    import cv2

    from ccyclegan.translate.paste import FaceEdit, warp_face

    if edit.delta is None:
        return edit
    x = face.astype(np.float32)
    moved = warp_face(x, edit.flow) if edit.flow is not None else x
    hp_in = moved - cv2.GaussianBlur(moved, (0, 0), 1.0)
    if grain:  # only the faint part (local RMS under grain grey levels): skin, not creases
        rms = np.sqrt(cv2.GaussianBlur(hp_in * hp_in, (0, 0), 2.0))
        hp_in = hp_in * np.clip(2.0 - rms / grain, 0.0, 1.0)
    paint = edit.paint.astype(np.float32)
    hp = paint - cv2.GaussianBlur(paint, (0, 0), 1.0)
    k = np.clip(-cv2.blur(hp * hp_in, (3, 3)) / (cv2.blur(hp_in * hp_in, (3, 3)) + 4.0), 0, 1)
    back = (share * k * hp_in).astype(np.float32)
    return FaceEdit(paint + back, edit.flow, edit.weight, edit.delta + back)


def paste_with(**settings):
    """paste_edit with some of its settings changed (gate, match, fade, seamless, and
    flow_of_edit's); the rest as translate calls it."""
    names = {"gate": "detail_gate", "cgate": "colour_gate"}
    flow_names = {"flow": "window", "maxflow": "max_len", "dead": "dead", "changed": "changed",
                  "smooth": "smooth", "parts": "parts"}  # flow_of_edit's
    kwargs = {names.get(k, k): v for k, v in settings.items()
              if k not in flow_names and k not in ("fade", "unblur", "grain")}
    ramp = {"ramp": settings["fade"]} if "fade" in settings else {}
    flow = {flow_names[k]: v for k, v in settings.items() if k in flow_names}
    move = bool(flow["window"]) if "window" in flow else paste_module.MOVE

    def paste(result, emotion: str) -> np.ndarray:
        pixels = result.original.pixels.copy()
        for face in result.faces:
            edit = face.edits[emotion]
            if move:
                edit = flow_of_edit(face.before, edit, **flow)
            if settings.get("unblur"):
                edit = unblurred(face.before, edit, settings["unblur"], settings.get("grain", 0))
            paste_turned(pixels, face.frame, face.roll, edit, border_fade(FACE_SIZE, **ramp),
                         **kwargs)
        return pixels
    return paste


def paste_of(name: str):
    if name == "model":
        return None
    if name == "legacy":
        return legacy_paste
    settings = {}
    for part in name.split("+"):
        key, _, value = part.partition(":")
        if key not in KEYS or not value:
            raise SystemExit(f"unknown paste {name!r} (model, gate:T, match:N, fade:R, "
                             "seamless:0|1, flow:W, maxflow:L, dead:D, changed:C, smooth:S, "
                             "parts:0|1, texture:T, cgate:T, guide:E, unblur:S, grain:G, "
                             "sharpen:K, shade:S joined with +, legacy)")
        settings[key] = (int(value) if key in ("match", "flow")
                         else bool(int(value)) if key in ("seamless", "parts")
                         else None if value == "off" else float(value))
    return paste_with(**settings)


def _f(value, spec: str) -> str:
    """A figure, or n/a where the summary has none (no face found again, say)."""
    return "n/a" if value is None else format(value, spec)


def framing_line(f: dict | None) -> str:
    if not f:
        return "framing: no face found by both paths"
    return (f"framing, the independent path's frame against the translator's (quartiles over "
            f"{f['faces']} faces): side ratio {f['side_ratio_q1_median_q3']}, centre offset x "
            f"{f['dx_q1_median_q3']}, y {f['dy_q1_median_q3']} (share of the side)")


def sharpness_line(s: dict) -> str:
    """Per target: the photo's sharpness ratio, and the model's own 48x48 output's."""
    photo, crop = s["sharpness_by_target"], s.get("crop_sharpness_by_target") or {}
    lines = ["sharpness ratio per target, photo / the model's 48x48 output: " + ", ".join(
        f"{t} {_f(photo[t], '.2f')} / {_f(crop.get(t), '.2f')}" for t in photo)]
    for band, by in (s.get("sharpness_by_size") or {}).items():
        if by:
            lines.append(f"photo sharpness ratio, faces {band} px: {by['overall']:.3f} ("
                         + ", ".join(f"{t} {v:.2f}" for t, v in by.items() if t != "overall")
                         + ")")
    colour = s.get("colour_by_target") or {}
    if any(v is not None for v in colour.values()):
        lines.append("colourfulness of the face region (chroma over luminance), output / input: "
                     + ", ".join(f"{t} {_f(v, '.2f')}" for t, v in colour.items()))
    return "\n".join(lines)


def grin_line(g: dict | None) -> str:
    if not g:
        return "grin: no face of these photos reads happy to the first judge"
    parts = [f"{judge}: photo {_f(r['photo']['overall'], '.1%')} / 48x48 "
             f"{_f(r['crop']['overall'], '.1%')}" for judge, r in g["judges"].items()]
    return (f"grin: of the {g['faces']} faces read happy unedited, turned {', '.join(g['targets'])}"
            f", the mouth still reads happy under the face's own upper half: " + "; ".join(parts)
            + " (lower is better)")


def table(name: str, s: dict) -> str:
    head = "| judge | read on | overall | " + " | ".join(e[:3] for e in EMOTIONS) + " |"
    sharp = s["sharpness"]
    lines = [f"### {name}", "", f"{s['faces']} faces, {s['translations']} translations; found "
             f"again in the output: {_f(s['found_again'], '.1%')}; same person (dlib 0.6, full "
             f"resolution): {_f(s['same_person'], '.1%')} (median distance "
             f"{_f(s['median_distance'], '.3f')}); sharpness ratio mean "
             f"{_f(sharp['mean'], '.3f')}, min {_f(sharp['min'], '.3f')}, share >= 0.9: "
             f"{_f(sharp['share_at_least_0.9'], '.1%')}", "", framing_line(s.get("framing")),
             "", sharpness_line(s), "", grin_line(s.get("grin")), "", head,
             "|" + "---|" * (3 + len(EMOTIONS))]
    for judge, res in s["judges"].items():
        for kind in ("photo", "edit_frame", "crop", "input"):
            r = res[kind]
            lines.append(f"| {judge} | {kind} | {_f(r['overall'], '.1%')} | "
                         + " | ".join(_f(r[e], ".0%") for e in EMOTIONS) + " |")
    cis = [f"{judge} {_f(res['photo']['overall'], '.1%')} [{res['photo']['ci95'][0]:.1%}, "
           f"{res['photo']['ci95'][1]:.1%}]" for judge, res in s["judges"].items()
           if "ci95" in res["photo"]]
    if cis:
        lines += ["", "photo, 95 % interval when the faces are drawn again: " + "; ".join(cis)]
    bands = s["translations_by_size"]
    lines += ["", "| judge | face side (px): translations | photo | edit_frame | crop | gap |",
              "|---|---|---|---|---|---|"]
    for judge, res in s["judges"].items():
        for band, n in bands.items():
            photo, own, crop = (res["by_size"][k][band] for k in ("photo", "edit_frame", "crop"))
            gap = None if photo is None else 100 * (crop - photo)
            lines.append(f"| {judge} | {band}: {n} | {_f(photo, '.1%')} | {_f(own, '.1%')} | "
                         f"{_f(crop, '.1%')} | {_f(gap, '.1f')} |")
    return "\n".join(lines)


def against_lines(s: dict, other: dict, name: str) -> str:
    """This paste's photo reading against another run's on the same translations (compare)."""
    lines = []
    for judge, c in compare(s, other).items():
        lo, hi = c["ci95"]
        lines.append(f"against {name}: {judge}: +{c['gained']} / -{c['lost']} translations, "
                     f"photo {c['difference']:+.1%} (95 % interval over faces {lo:+.1%} to "
                     f"{hi:+.1%}), McNemar p {c['p']:.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", default="../shared/data/photos")
    p.add_argument("--judge", action="append", help="classifier run or file (default: the two "
                                                      "the package ships)")
    p.add_argument("--paste", action="append",
                   help="model (default), gate:T|off+match:N+fade:R, legacy; repeatable")
    p.add_argument("--model", action="append", help="generator file/run (default: bundled)")
    p.add_argument("--out", default="runs/photo_quality")
    p.add_argument("--intensity", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--against", metavar="SUMMARY.json",
                   help="another run's summary of the same photos: each paste's photo reading "
                        "against it, paired (translations gained and lost, McNemar p, interval "
                        "over faces)")
    p.add_argument("--frame-scale", type=float, default=FRAME_SCALE,
                   help=f"the translator's frame: the Haar box enlarged by this (default "
                   f"{FRAME_SCALE}, the package's); to measure the framing")
    p.add_argument("--turn", action=argparse.BooleanOptionalAction, default=None,
                   help="crop rolled faces upright and turn the edit back (faces.TURN; "
                        "default: the package's, off; the legacy paste knows no turn)")
    a = p.parse_args(argv)
    a.other = None
    if a.against:
        try:
            a.other = json.loads(Path(a.against).read_text())
        except (OSError, ValueError) as e:
            sys.exit(f"--against {a.against}: not a readable summary ({e})")
        if "pairs" not in a.other:
            sys.exit(f"--against {a.against}: a summary from before the benchmark kept its "
                     "translations' readings; run that paste again")
    if a.threads:
        torch.set_num_threads(a.threads)
    photos = sorted(q for q in Path(a.photos).iterdir() if q.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        sys.exit(f"{a.photos}: no photos")
    paths = a.judge or [p for p in (bundled_model_path(BUNDLED_JUDGE),
                                    bundled_model_path(BUNDLED_SECOND_JUDGE)) if p is not None]
    judges = {Path(j).stem: load_classifier(j)[0] for j in paths}
    reader = PhotoReader()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    api.frame_box = functools.partial(frame_box, scale=a.frame_scale)
    turn = faces_module.TURN
    if a.turn is not None:
        faces_module.TURN = a.turn
    try:
        run(a, photos, judges, reader, out)
    finally:
        api.frame_box = frame_box
        faces_module.TURN = turn
    return 0


def run(a: argparse.Namespace, photos: list[Path], judges: dict, reader: PhotoReader,
        out: Path) -> None:
    for model in a.model or [None]:
        tr = ExpressionTranslator.load(model, threads=a.threads or None)
        name = "bundled" if model is None else Path(model).stem
        if Path(model or "").name in ("release.safetensors", "generator.safetensors"):
            name = Path(model).parent.name
        for paste in a.paste or ["model"]:
            t0 = time.perf_counter()
            records, info = translate_and_judge(tr, photos, reader, intensity=a.intensity,
                                                paste=paste_of(paste))
            s = summarize(records, judges)
            s.update(info=info, model=str(model or "bundled"), paste=paste,
                     frame_side_median=float(np.median([r.side for r in records])),
                     seconds=time.perf_counter() - t0)
            tag = f"{name}__{paste.replace(':', '').replace('+', '_')}"
            if a.frame_scale != FRAME_SCALE:
                tag += f"__frame{a.frame_scale:g}"
                s["frame_scale"] = a.frame_scale
            if faces_module.TURN:
                tag += "__turn"
            s["turn"] = faces_module.TURN
            (out / f"{tag}.json").write_text(json.dumps(s, indent=1))
            print(table(tag, s), "\n", json.dumps(info), flush=True)
            if a.other is not None:
                print(against_lines(s, a.other, Path(a.against).stem), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
