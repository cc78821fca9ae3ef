"""What a loss classifier's gradient asks G to draw: push PublicTest faces towards a target
emotion by gradient descent on each classifier's cross-entropy alone (normalised L2 steps,
within an L2 ball of --eps around the face, pixels in [-1, 1]) and put the results side by
side. A classifier trained on clean faces is satisfied by texture; an adversarially trained one
(`train-classifier --adv-eps`) draws smiles and open mouths, the change a G trained against it
is asked for.

    python experiments/robust_classifier/guide_gradients.py runs/clf_loss runs/clf_robust \\
        --targets happy,surprise \\
        --out docs/img/guide_gradients.png
"""

from __future__ import annotations

import argparse

import torch
from PIL import Image, ImageDraw

from ccyclegan.classifier.nets import load_classifier
from ccyclegan.classifier.train import l2_attack
from ccyclegan.core.data import EMOTIONS, drop_blank, load_split
from ccyclegan.evaluate.run import seeded_subset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("classifiers", nargs="+", help="train-classifier run directories")
    ap.add_argument("--data", default="../shared/data/fer2013/fer2013.csv.gz")
    ap.add_argument("--targets", default="happy,surprise")
    ap.add_argument("--faces", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eps", type=float, default=6.0)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--scale", type=int, default=3, help="pixels per face pixel in the figure")
    ap.add_argument("--out", default="guide_gradients.png")
    args = ap.parse_args()
    torch.set_num_threads(2)
    targets = [EMOTIONS.index(t) for t in args.targets.split(",")]
    faces, _ = drop_blank(load_split(args.data, "test"))
    x0 = seeded_subset(faces, args.faces, args.seed).images.float() / 127.5 - 1
    rows, names = [x0], ["input"]
    for path in args.classifiers:
        model = load_classifier(path)[0].eval()
        for t in targets:
            x = l2_attack(model, x0, torch.full((len(x0),), t), args.eps, args.steps,
                          targeted=True)
            with torch.no_grad():
                p = model(x).softmax(1)[:, t].mean()
            rows.append(x)
            names.append(f"{path}: {EMOTIONS[t]} (p {p:.2f})")
            print(names[-1])
    grid = torch.cat([torch.cat(list(r[:, 0]), 1) for r in rows], 0)
    s, label_w = args.scale, 240
    img = Image.fromarray(((grid + 1) * 127.5).clamp(0, 255).byte().numpy()).resize(
        (grid.shape[1] * s, grid.shape[0] * s), Image.NEAREST)
    canvas = Image.new("L", (img.width + label_w, img.height), 255)
    canvas.paste(img, (label_w, 0))
    draw = ImageDraw.Draw(canvas)
    for i, name in enumerate(names):
        draw.text((4, i * 48 * s + 48 * s // 2 - 6), name, fill=0)
    canvas.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
