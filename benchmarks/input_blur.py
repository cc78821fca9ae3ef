"""What the input blur does for a classifier trained on blurred faces.

Estimates the blur of the Training faces relative to the test faces (data.estimate_blur: the
Gaussian sigma that gives sharp faces the median sharpness of the Training faces; pixel
statistics only, no labels), then scores the classifier on the test split with the test faces
as they are, blurred by the estimate, and (for context) blurred by a few fixed sigmas.
Prints one JSON object.

    python benchmarks/input_blur.py --data ../shared/data/fer2013/fer2013.csv.gz \
        --classifier runs/clf32 [--threads 2]
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--classifier", required=True, help="train-classifier run or file")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--sigmas", default="1,2,3,4,5", help="fixed sigmas to score as well")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from ccyclegan.classifier import accuracy_report, load_classifier
    from ccyclegan.data import drop_blank, estimate_blur, face_sharpness, load_split

    train, _ = drop_blank(load_split(args.data, "train"))
    test = load_split(args.data, "test")
    sigma = estimate_blur(train, test)
    model, _ = load_classifier(args.classifier)
    def spread(faces):  # 1st percentile, median, 99th percentile of per-face sharpness
        q = torch.quantile(face_sharpness(faces.images), torch.tensor([0.01, 0.5, 0.99]))
        return [round(float(v), 2) for v in q]

    res = {"train_sharpness_p1_median_p99": spread(train),
           "test_sharpness_p1_median_p99": spread(test),
           "estimated_sigma": sigma, "classifier_input_blur": model.input_blur,
           "test_faces": len(test), "accuracy": {}}
    for s in [0.0, sigma, *(float(v) for v in args.sigmas.split(","))]:
        rep = accuracy_report(model, test, input_blur=s)
        res["accuracy"][f"sigma_{s:g}"] = round(rep["accuracy"], 4)
        if s == sigma:
            res["per_class_at_estimate"] = {k: round(v, 4) for k, v in rep["per_class"].items()}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
