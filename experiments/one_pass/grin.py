"""Does a grin close? (issue 30: "a grin becomes a closed mouth for sad, angry and neutral").

The judges read a whole face, and a FER2013 angry face may show its teeth: a translation of a
smiling face to angry reads angry from its brows and eyes while the grin stays (80 % of happy
faces turned angry read angry, and Tom Cruise's grin is still there). This reads the mouth
alone: the translated face's lower part under the source's own upper part
(`ccyclegan.evaluate.metrics.mouth_composite`). If the grin stays, the composite is
the source face and reads happy; if the mouth closed, the smile has gone from it.

    python experiments/one_pass/grin.py --data fer2013.csv.gz --model runs/one_pass/s32 \
        --model src/ccyclegan/weights/ccyclegan_fer2013.safetensors

PublicTest faces labelled happy that the first judge also reads happy (a grin to close),
translated to angry, sad and neutral; per target: the translation read as its target (first /
second judge), and the mouth composite read as happy (first / second judge; lower is a closed
grin). The source itself is the row "(input)". With --via neutral, also each target reached in
two steps, through neutral first.
"""

from __future__ import annotations

import argparse

import torch

from ccyclegan.classifier import load_classifier, predict
from ccyclegan.core.data import EMOTIONS, load_split, normalize
from ccyclegan.core.generator_files import load_generator
from ccyclegan.core.models import one_hot
from ccyclegan.evaluate.metrics import GRIN_CLOSERS, mouth_composite

JUDGES = ("src/ccyclegan/weights/judge_vgg64.safetensors",
          "src/ccyclegan/weights/judge_resnet32.safetensors")
HAPPY = EMOTIONS.index("happy")


def translate(G, feats: list[torch.Tensor], t: int) -> torch.Tensor:
    """G's decoding of an encoding (G.encode: once per face, whatever the target) under t."""
    return G.decode(feats, one_hot(torch.full((len(feats[0]),), t)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--via", choices=EMOTIONS,
                    help="also translate in two steps, through this emotion first (a teacher's "
                         "edit of its own neutral face, say)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    judges = [load_classifier(p)[0].float() for p in JUDGES]
    test = load_split(args.data, "test")
    faces = test.images[test.labels == HAPPY]
    x = normalize(faces)
    keep = predict(judges[0], x).argmax(1) == HAPPY
    x = x[keep][:args.limit]
    print(f"{len(x)} PublicTest faces labelled happy and read happy by the first judge")

    def row(name: str, out: torch.Tensor, t: int) -> str:
        read = [f"{100 * (predict(j, out).argmax(1) == t).float().mean():5.1f}" for j in judges]
        comp = mouth_composite(x, out)
        happy = [f"{100 * (predict(j, comp).argmax(1) == HAPPY).float().mean():5.1f}"
                 for j in judges]
        return f"{name:<28} {EMOTIONS[t]:<8} {' / '.join(read)}   {' / '.join(happy)}"

    print(f"{'model':<28} {'target':<8} {'reads target':<15} mouth reads happy")
    print(row("(input)", x, HAPPY))
    for path in args.model:
        G = load_generator(path)[0].float().eval()
        with torch.inference_mode():
            feats = G.encode(x)
            mid = None if args.via is None else G.encode(
                translate(G, feats, EMOTIONS.index(args.via)))
            for name in GRIN_CLOSERS:
                t = EMOTIONS.index(name)
                print(row(path[-28:], translate(G, feats, t), t))
                if mid is not None:
                    print(row(f"  via {args.via}", translate(G, mid, t), t))


if __name__ == "__main__":
    main()
