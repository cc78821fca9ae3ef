"""The photo benchmark: every face of the photos in a folder, in every emotion, judged as the
user gets it (whole photo, its own resolution) and beside the model's own 48x48 output.

    python benchmarks/photo_quality.py --photos ../shared/data/photos --judge runs/judge \
        --judge runs/judge2 [--model FILE ...] [--out runs/photo_quality]

Writes <out>/<model>.json (the summary of ccyclegan.photo_eval.summarize) and prints a table
per model: photo vs crop accuracy per target for each judge, same person (dlib, 150-pixel chip,
0.6), sharpness ratio of the face region.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ccyclegan.classifier.nets import load_classifier
from ccyclegan.core.data import EMOTIONS
from ccyclegan.evaluate.photos import PhotoReader, summarize, translate_and_judge
from ccyclegan.translate.api import ExpressionTranslator

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


def table(name: str, s: dict) -> str:
    head = "| judge | read on | overall | " + " | ".join(e[:3] for e in EMOTIONS) + " |"
    lines = [f"### {name}", "", f"{s['faces']} faces, {s['translations']} translations; found "
             f"again in the output: {s['found_again']:.1%}; same person (dlib 0.6, full "
             f"resolution): {s['same_person']:.1%} (median distance {s['median_distance']:.3f}); "
             f"sharpness ratio mean {s['sharpness']['mean']:.3f}, min {s['sharpness']['min']:.3f}, "
             f"share >= 0.9: {s['sharpness']['share_at_least_0.9']:.1%}", "", head,
             "|" + "---|" * (3 + len(EMOTIONS))]
    for judge, res in s["judges"].items():
        for kind in ("photo", "crop", "input"):
            r = res[kind]
            lines.append(f"| {judge} | {kind} | {r['overall']:.1%} | "
                         + " | ".join(f"{r[e]:.0%}" for e in EMOTIONS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", default="../shared/data/photos")
    p.add_argument("--judge", action="append", required=True, help="classifier run or file")
    p.add_argument("--model", action="append", help="generator file/run (default: bundled)")
    p.add_argument("--out", default="runs/photo_quality")
    p.add_argument("--intensity", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    photos = sorted(q for q in Path(a.photos).iterdir() if q.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        sys.exit(f"{a.photos}: no photos")
    judges = {Path(j).name: load_classifier(j)[0] for j in a.judge}
    reader = PhotoReader()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for model in a.model or [None]:
        tr = ExpressionTranslator.load(model, threads=a.threads or None)
        t0 = time.perf_counter()
        records, info = translate_and_judge(tr, photos, reader, intensity=a.intensity)
        s = summarize(records, judges)
        s.update(info=info, model=str(model or "bundled"), seconds=time.perf_counter() - t0)
        name = "bundled" if model is None else Path(model).stem if Path(model).is_file() \
            else Path(model).name
        if Path(model or "").name == "release.safetensors":
            name = Path(model).parent.name
        (out / f"{name}.json").write_text(json.dumps(s, indent=1))
        print(table(name, s), "\n", json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
