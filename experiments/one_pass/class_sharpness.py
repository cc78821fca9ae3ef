"""How sharp FER2013's real faces are per emotion: the median variance of the Laplacian (the
photo benchmark's sharpness measure) of each label's training faces, over all faces' median.
A generator that paints one target softer than its input may be learning that label's faces.

    python experiments/one_pass/class_sharpness.py --data ../shared/data/fer2013/fer2013.csv.gz
"""

from __future__ import annotations

import argparse

import numpy as np

from ccyclegan.core.data import EMOTIONS, drop_blank, load_split
from ccyclegan.evaluate.photos import laplacian_variance


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="train")
    args = p.parse_args()
    faces = drop_blank(load_split(args.data, args.split))[0]
    images = faces.images[:, 0].numpy()
    sharp = np.array([laplacian_variance(i) for i in images])
    labels = faces.labels.numpy()
    overall = np.median(sharp)
    print(f"{args.split}: {len(labels)} faces, median variance of the Laplacian {overall:.0f}")
    for k, name in enumerate(EMOTIONS):
        s = sharp[labels == k]
        print(f"{name:9s} {len(s):5d} faces  median {np.median(s):6.0f}  "
              f"over all faces' {np.median(s) / overall:.2f}")


if __name__ == "__main__":
    main()
