"""Choose the Wiener regularisation of `translate --deblur` for a model trained on blurred faces.

A generator with an input blur sees x' = blur(x) and makes its change r = G(x'|t) - G(x'|y_x)
in the blurred domain. `translate` returns x + d_lambda(r), d_lambda the Wiener inverse of the
blur (lambda = 0: r as it is). A good output, blurred, is the model's own translation x' + r;
so for each lambda this prints, without any judge:

* consistency: mean |blur(x + d(r)) - (x' + r)| in grey levels over the whole 48x48 face,
  after rounding and clipping to 0..255 as `translate` does (and over the central 32x32 face
  box alone, away from the frame edge, where the FFT's padding matters less);
* sharpness: median face_sharpness of the outputs (the real faces' own is printed beside it:
  an output much sharper than real faces has amplified noise);
* change: mean |output - x| inside and outside the face box (0..1 scale).

The default lambda is the one with the best consistency. With --classifier it also prints,
for information only, the judge's expression accuracy and mean per-target FED of each lambda.

    python benchmarks/deblur.py --data ../shared/data/fer2013/fer2013.csv.gz \\
        --checkpoint src/ccyclegan/weights/ccyclegan_fer2013.safetensors --limit 500 \\
        [--classifier runs/clf32]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--classifier", help="also score each lambda with this judge")
    ap.add_argument("--limit", type=int, default=500, help="seeded subset (0: every face)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lambdas", default="0,0.1,0.03,0.01,0.003,0.001")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from ccyclegan.data import EMOTIONS, blur_faces, drop_blank, face_sharpness, load_split
    from ccyclegan.evaluate import (
        FACE_BOX,
        _distances,
        _translate,
        box_mask,
        region_change,
        seeded_subset,
    )
    from ccyclegan.train import load_generator
    from ccyclegan.visualize import residual

    G, gcfg, _ = load_generator(args.checkpoint, "cpu")
    sigma = max(gcfg.input_blur, 0.0)
    if not sigma:
        raise SystemExit(f"{args.checkpoint}: this model has no input blur; nothing to deblur")
    faces, _ = drop_blank(load_split(args.data, "test"))
    faces = seeded_subset(faces, args.limit, args.seed)  # the faces of `evaluate --limit`
    x, y = faces.images, faces.labels
    seen = blur_faces(x, sigma)
    raw = _translate(G, seen, 256)  # [N, 7, 1, 48, 48] uint8
    pairs = [(i, t) for i in range(len(y)) for t in range(len(EMOTIONS)) if t != y[i]]
    src = torch.tensor([i for i, _ in pairs])
    tgt = torch.tensor([t for _, t in pairs])
    target = residual(seen, raw, y)[src, tgt].float()  # x' + r: the model's translation
    box = box_mask(48, FACE_BOX)

    judge = f_real = None
    if args.classifier:
        from ccyclegan.classifier import classify, load_classifier

        judge, _ = load_classifier(args.classifier, "cpu")
        _, f_real = classify(judge, x)

    rows = {}
    for lam in (float(v) for v in args.lambdas.split(",") if v.strip()):
        out = residual(x, raw, y, sigma, lam)[src, tgt]  # what translate returns
        diff = (blur_faces(out.float(), sigma) - target).abs()
        row = {"consistency": round(float(diff.mean()), 3),
               "consistency_face_box": round(float(diff[..., box].mean()), 3),
               "sharpness": round(float(face_sharpness(out).median()), 2),
               "change": {k: round(v, 4) for k, v in region_change(x[src], out).items()}}
        if judge is not None:
            p, f = classify(judge, out)
            d = _distances(f_real.numpy().astype(np.float64), f.numpy().astype(np.float64),
                           y.numpy(), src.numpy(), tgt.numpy(), args.seed, False, 100, 1)
            row["judge_accuracy_pct"] = round(100 * float((p.argmax(1) == tgt).float().mean()), 1)
            row["fed_mean_per_target"] = round(float(np.mean(
                [d["model"]["per_target"][e]["frechet"] for e in EMOTIONS])), 3)
        rows[f"{lam:g}"] = row
        print(f"lambda {lam:g}: {json.dumps(row)}", flush=True)
    best = min(rows, key=lambda k: rows[k]["consistency"])
    print(json.dumps({"checkpoint": args.checkpoint, "faces": len(y), "seed": args.seed,
                      "input_blur": sigma,
                      "real_sharpness": round(float(face_sharpness(x).median()), 2),
                      "best_consistency_lambda": best, "lambdas": rows}, indent=2))


if __name__ == "__main__":
    main()
