"""Why a grin's teeth stay on a large face: the model's own 48x48 parts at the teeth.

The bundled generator's output is A x + (1 - A) colour (an attention output): A, the share of
the input kept, is what the photo path keeps of the photo's own detail. For each target this
prints, over the face's teeth (the brightest tenth of the mouth's box in the 48x48 input), the
input, the output, A and the colour the model paints there, in grey levels. With --bias, also a
figure of the mouth at the photo's resolution with the mask's logit shifted by each bias (exact:
it is the output layer's bias, so it folds into the weights), one row per bias.

    python experiments/photo_release/mouth_parts.py \
        ../shared/data/photos/Tom_Cruise_avp_2014_4.jpg --bias 0 -0.75 -1.5

With several --model, the figure has their rows one after the other (--bias 0: each as it is).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ccyclegan.translate.api import ExpressionTranslator

HERE = Path(__file__).parent
MOUTH = np.s_[30:45, 12:36]  # rows and columns of the mouth in a FER2013-framed 48x48 face


def teeth_parts(face: np.ndarray, edit) -> dict[str, float]:
    """Mean input, output, kept share A and painted colour over the teeth of a 48x48 face."""
    x = face.astype(np.float32)[MOUTH]
    out = x + edit.delta[MOUTH]
    painted = edit.weight[MOUTH]  # 1 - A
    teeth = x >= np.percentile(x, 90)
    colour = (out - (1 - painted) * x) / np.maximum(painted, 1e-3)
    return {"input": float(x[teeth].mean()), "output": float(out[teeth].mean()),
            "kept A": float(1 - painted[teeth].mean()), "colour": float(colour[teeth].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo")
    ap.add_argument("--face", type=int, default=0, help="which face (largest first: 0)")
    ap.add_argument("--targets", default="angry,sad,neutral")
    ap.add_argument("--bias", type=float, nargs="*", default=[],
                    help="mask logit shifts for the figure (0: the model as it is)")
    ap.add_argument("--model", action="append",
                    help="a generator file or run, repeatable (default: the bundled file)")
    ap.add_argument("--out", default=str(HERE / "mouth_parts.jpg"))
    args = ap.parse_args()

    img = np.asarray(Image.open(args.photo).convert("RGB"))
    targets = tuple(args.targets.split(","))
    rows = []
    for model in args.model or [None]:
        tr = ExpressionTranslator.load(model)
        res = tr.translate_faces(img, to="all")
        face = sorted(res.faces, key=lambda f: -f.frame.w)[args.face]
        print(f"{model or 'bundled'}: {Path(args.photo).name}, a {face.frame.w}-pixel face; "
              "over its teeth at 48x48:")
        for t in targets:
            parts = teeth_parts(face.before, face.edits[t])
            print(f"  {t:8s} " + ", ".join(f"{k} {v:.2f}" if k == "kept A" else f"{k} {v:.0f}"
                                           for k, v in parts.items()))
        rows += mouth_rows(tr, img, face.frame, targets, args.bias)
    if rows:
        Image.fromarray(np.concatenate(rows, 0)).save(args.out, quality=90)
        print(f"wrote {args.out}: per model, rows mask bias {args.bias}; input, then "
              f"{', '.join(targets)}")


def mouth_rows(tr: ExpressionTranslator, img: np.ndarray, fr, targets: tuple[str, ...],
               biases: list[float]) -> list[np.ndarray]:
    """The mouth's region of the photo translated to each target, one row per mask bias."""
    G = tr._backend.G
    bias0 = G.out.bias.detach().clone()
    box = (fr.x + fr.w // 5, fr.y + fr.h // 2, fr.x + 4 * fr.w // 5, fr.y + 9 * fr.h // 10)
    rows = []
    for b in biases:
        with torch.no_grad():
            G.out.bias.copy_(bias0)
            G.out.bias[1] += b  # channel 1: the mask's logit
        res_b = tr.translate_faces(img, to="all")
        tiles = [img] + [res_b.image(t) for t in targets]
        rows.append(np.concatenate([np.asarray(Image.fromarray(a).crop(box)) for a in tiles], 1))
    with torch.no_grad():
        G.out.bias.copy_(bias0)
    return rows


if __name__ == "__main__":
    main()
