"""How the judge reads a generator trained on blurred faces, under different views of its edit.

G sees x', the test face blurred by the model's input_blur, and makes the change
r = G(x'|t) - G(x'|y_x); `translate` adds it, deblurred, to the sharp face: x + d(r)
(data.deblur_change). The project's classifier was trained on the same blurred faces and
blurs every face it judges, so for the change added as it is it sees blur(x + r) =
x' + blur(r): G's change, already smooth, is blurred a second time. This scores the same
translations (each face to the 6 other emotions) as the judge sees them:

* output_deblur: blur(x + d(r)) with the default deblur, what `translate` returns and
                 `ccyclegan evaluate` reports as expression accuracy;
* output:        blur(x + r), the change as G made it (`evaluate`'s "without deblurring");
* domain:        x' + r, judged without further blur (evaluate's blurred-domain figure);
* raw:           G(x'|t) itself, without the residual;
* output_gain_k: blur(x + k r), the change amplified k times (k from --gains);
* identity:      blur(x), the face unchanged.

Prints one JSON object: overall and per-target accuracy (%) for each view.

    python benchmarks/judge_views.py --data ../shared/data/fer2013/fer2013.csv.gz \
        --checkpoint src/ccyclegan/weights/ccyclegan_fer2013.safetensors \
        --classifier runs/clf32 --limit 500
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--classifier", required=True, help="train-classifier run or file")
    ap.add_argument("--limit", type=int, default=500, help="seeded subset (0: every face)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gains", default="2,3", help="amplifications of the change to score")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from ccyclegan.classifier import classify, load_classifier
    from ccyclegan.data import DEBLUR, EMOTIONS, blur_faces, deblur_change, drop_blank, load_split
    from ccyclegan.evaluate import _translate, seeded_subset
    from ccyclegan.train import load_generator

    G, gcfg, _ = load_generator(args.checkpoint, "cpu")
    judge, _ = load_classifier(args.classifier, "cpu")
    faces, _ = drop_blank(load_split(args.data, "test"))
    faces = seeded_subset(faces, args.limit, args.seed)  # the faces of `evaluate --limit`
    x, y = faces.images, faces.labels
    sigma = max(gcfg.input_blur, 0.0)
    seen = blur_faces(x, sigma)
    raw = _translate(G, seen, 256).float()  # [N, 7, 1, 48, 48], 0..255
    change = raw - raw[torch.arange(len(y)), y][:, None]

    def score(views: torch.Tensor, blur: float | None) -> dict:
        hits, total, per = 0, 0, {}
        for t in range(len(EMOTIONS)):
            rows = y != t
            img = views[rows, t].round().clamp(0, 255).to(torch.uint8)
            ok = (classify(judge, img, input_blur=blur)[0].argmax(1) == t).sum().item()
            per[EMOTIONS[t]] = round(100 * ok / max(int(rows.sum()), 1), 1)
            hits, total = hits + ok, total + int(rows.sum())
        return {"overall": round(100 * hits / max(total, 1), 1), "per_target": per}

    sharp, blurred = x.float()[:, None], seen.float()[:, None]
    restored = torch.from_numpy(deblur_change(change.numpy(), sigma, DEBLUR))
    res = {"output_deblur": score(sharp + restored, None),
           "output": score(sharp + change, None),
           "domain": score(blurred + change, 0.0),
           "raw": score(raw, 0.0)}
    for k in (float(g) for g in args.gains.split(",") if g.strip()):
        res[f"output_gain_{k:g}"] = score(sharp + k * change, None)
    res["identity"] = score(sharp.expand(-1, len(EMOTIONS), -1, -1, -1), None)
    print(json.dumps({"checkpoint": args.checkpoint, "faces": len(y), "seed": args.seed,
                      "input_blur": sigma, "judge_blur": getattr(judge, "input_blur", 0.0),
                      "accuracy_pct": res}, indent=2))


if __name__ == "__main__":
    main()
