"""Edit strength per target emotion, chosen by measurement: translate a fixed PublicTest subset
once, blend x + s (G(x|t) - x) at each strength s, and read every (target, s) with the judges
and dlib's same-person check. The rule, fixed before looking: for each target, the largest s
whose same-person share is at least --bar. Prints the table and the `export --strength` spec.

    python benchmarks/strength_sweep.py runs/attention_conf --classifier runs/judge \\
        --second-classifier runs/judge2 --strengths 1,0.9,0.8,0.7,0.6 --out runs/sweep.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ccyclegan import identity as face_id
from ccyclegan.classifier import classify, load_classifier
from ccyclegan.data import EMOTIONS, NUM_CLASSES, denormalize, drop_blank, load_split, normalize
from ccyclegan.evaluate import seeded_subset
from ccyclegan.gan_checkpoint import load_generator
from ccyclegan.identity import FER_THRESHOLD
from ccyclegan.models import one_hot


def translations(G, images: torch.Tensor, labels: np.ndarray, batch: int = 128):
    """(src, tgt, x, g): every face to its 6 other emotions, as floats in [-1, 1]."""
    src = np.repeat(np.arange(len(labels)), NUM_CLASSES)
    tgt = np.tile(np.arange(NUM_CLASSES), len(labels))
    keep = tgt != labels[src]
    src, tgt = src[keep], tgt[keep]
    x = normalize(images[torch.from_numpy(src)])
    with torch.no_grad():
        g = torch.cat([G(xb, one_hot(torch.from_numpy(tb))).float()
                       for xb, tb in zip(x.split(batch), np.array_split(
                           tgt, range(batch, len(tgt), batch)), strict=True)])
    return src, tgt, x, g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default="../shared/data/fer2013/fer2013.csv.gz")
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--second-classifier")
    ap.add_argument("--strengths", default="1,0.9,0.8,0.7,0.6")
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--identity-faces", type=int, default=150)
    ap.add_argument("--bar", type=float, default=0.9, help="same-person share each target keeps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="write the table as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    G, _, _ = load_generator(args.checkpoint)
    G.strength = 1.0  # the sweep blends G's full edit itself
    faces, _ = drop_blank(load_split(args.data, "test"))
    faces = seeded_subset(faces, args.limit, args.seed)
    labels = faces.labels.numpy()
    src, tgt, x, g = translations(G, faces.images, labels)
    judges = {"J1": load_classifier(args.classifier)[0]}
    if args.second_classifier:
        judges["J2"] = load_classifier(args.second_classifier)[0]
    embedder = face_id.FaceEmbedder()
    idn = src < args.identity_faces
    emb_real = embedder.embed(faces.images[:args.identity_faces, 0].numpy())
    table: dict[str, dict[str, dict[str, float]]] = {}
    hits: dict[tuple[str, float], np.ndarray] = {}
    kept_all: dict[float, np.ndarray] = {}
    strengths = [float(s) for s in args.strengths.split(",")]
    for s in strengths:
        out = denormalize(x + s * (g - x))
        for name, clf in judges.items():
            hits[name, s] = classify(clf, out)[0].argmax(1).numpy() == tgt
        emb = embedder.embed(out[torch.from_numpy(np.flatnonzero(idn)), 0].numpy())
        kept_all[s] = np.linalg.norm(emb_real[src[idn]] - emb, axis=1) < FER_THRESHOLD
        for t in range(NUM_CLASSES):
            row = table.setdefault(EMOTIONS[t], {}).setdefault(f"{s:g}", {})
            for name in judges:
                row[name] = float(hits[name, s][tgt == t].mean())
            row["kept"] = float(kept_all[s][tgt[idn] == t].mean())
        print(f"strength {s:g}: " + ", ".join(
            f"{n} {100 * hits[n, s].mean():.1f} %" for n in judges) +
            f", same person {100 * kept_all[s].mean():.1f} % ({time.perf_counter() - t0:.0f} s)")
    # the rule: per target, the largest strength whose same-person share reaches the bar
    chosen = {}
    for e in EMOTIONS:
        ok = [s for s in strengths if table[e][f"{s:g}"]["kept"] >= args.bar]
        chosen[e] = max(ok) if ok else min(strengths)
    pick = np.array([chosen[EMOTIONS[t]] for t in tgt])
    mix = {n: float(np.mean([hits[n, pick[i]][i] for i in range(len(tgt))])) for n in judges}
    mix["kept"] = float(np.mean([kept_all[pick[i]][k] for k, i in
                                 enumerate(np.flatnonzero(idn))]))
    print("\n| target | " + " | ".join(f"s={s:g} " + "/".join([*judges, "kept"])
                                       for s in strengths) + " | chosen |")
    print("|---" * (len(strengths) + 2) + "|")
    for e in EMOTIONS:
        cells = [" / ".join(f"{100 * table[e][f'{s:g}'][k]:.0f}" for k in [*judges, "kept"])
                 for s in strengths]
        print(f"| {e} | " + " | ".join(cells) + f" | {chosen[e]:g} |")
    spec = ",".join(f"{e}={chosen[e]:g}" for e in EMOTIONS)
    print("\nper-target mix: " + ", ".join(f"{n} {100 * v:.1f} %" for n, v in mix.items()))
    print(f"export --strength '{spec}'")
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"checkpoint": args.checkpoint, "faces": len(labels), "identity_faces":
             args.identity_faces, "bar": args.bar, "table": table, "chosen": chosen,
             "mix": mix, "spec": spec}, indent=1))


if __name__ == "__main__":
    main()
