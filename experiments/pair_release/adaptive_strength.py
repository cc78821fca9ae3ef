"""Edit strength per face, chosen by a guide classifier: does spending the edit where a face
needs it keep the person more often than one strength for all? For each held-out (face,
target) pair, translate at every strength of a grid, x + s (G(x|t) - x), and take the smallest
strength at which the guide (the frozen loss classifier, never a judge) reads the target with
probability >= tau; none reaching it gets the largest. The judges and dlib's same-person check
then read the chosen translations. Prints one row per uniform strength and per tau, and the best
of each family that keeps the person on at least --bar.

    python experiments/pair_release/adaptive_strength.py runs/attention_conf \\
        --guide runs/clf_loss \\
        --classifier runs/judge --second-classifier runs/judge2 --out runs/adaptive.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ccyclegan.classifier.nets import classify, load_classifier
from ccyclegan.core.data import drop_blank, load_split
from ccyclegan.core.generator_files import MAX_STRENGTH, as_ensemble, load_generator
from ccyclegan.evaluate import identity as face_id
from ccyclegan.evaluate.identity import FER_THRESHOLD
from ccyclegan.evaluate.run import _translate, seeded_subset, translation_pairs


def measure(args, faces, src, tgt, idn) -> dict[str, np.ndarray]:
    """Per strength (rows) and pair (columns): guide probability of the target, judge hits,
    and same-person (only the pairs of the first --identity-faces faces)."""
    t0 = time.perf_counter()
    G = as_ensemble(load_generator(args.checkpoint)[0])
    G.strength = 1.0  # blended here, as evaluate --intensity does
    pairs = torch.from_numpy(src), torch.from_numpy(tgt)
    guide = load_classifier(args.guide)[0]
    judges = {"J1": load_classifier(args.classifier)[0]}
    if args.second_classifier:
        judges["J2"] = load_classifier(args.second_classifier)[0]
    embedder = face_id.FaceEmbedder()
    emb_real = embedder.embed(faces.images[:args.identity_faces, 0].numpy())
    rows: dict[str, list[np.ndarray]] = {"guide": [], "kept": [], **{n: [] for n in judges}}
    for s in args.strengths:
        out = _translate(G, faces.images, 128, s)[pairs]
        rows["guide"].append(classify(guide, out)[0].numpy()[np.arange(len(tgt)), tgt])
        for n, clf in judges.items():
            rows[n].append(classify(clf, out)[0].argmax(1).numpy() == tgt)
        emb = embedder.embed(out[torch.from_numpy(np.flatnonzero(idn)), 0].numpy())
        rows["kept"].append(np.linalg.norm(emb_real[src[idn]] - emb, axis=1) < FER_THRESHOLD)
        print(f"strength {s:g}: " + ", ".join(f"{n} {100 * rows[n][-1].mean():.1f} %"
                                              for n in judges)
              + f", same person {100 * rows['kept'][-1].mean():.1f} %"
              f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {k: np.stack(v) for k, v in rows.items()}


def score(m: dict[str, np.ndarray], choice: np.ndarray, idn: np.ndarray,
          strengths: list[float]) -> dict[str, float]:
    """Shares read as the target / kept when pair i gets the strength index choice[i]."""
    cols = np.arange(choice.size)
    out = {k: float(m[k][choice, cols].mean()) for k in m if k not in ("guide", "kept")}
    out["kept"] = float(m["kept"][choice[idn], np.arange(idn.sum())].mean())
    out["mean strength"] = float(np.mean(np.asarray(strengths)[choice]))
    return out


def adaptive(guide: np.ndarray, tau: float) -> np.ndarray:
    """The first (weakest) strength index whose guide probability reaches tau, else the last."""
    ok = guide >= tau
    return np.where(ok.any(0), ok.argmax(0), len(guide) - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default="../shared/data/fer2013/fer2013.csv.gz")
    ap.add_argument("--guide", required=True, help="classifier that picks the strength")
    ap.add_argument("--classifier", required=True, help="the judge")
    ap.add_argument("--second-classifier")
    ap.add_argument("--strengths", default="0.5,0.6,0.7,0.8,0.9,1,1.1,1.2")
    ap.add_argument("--taus", default="0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--identity-faces", type=int, default=150)
    ap.add_argument("--bar", type=float, default=0.9, help="same-person share to keep")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table", help="an .npz this script wrote: score it instead of measuring")
    ap.add_argument("--out", help="write the rows as JSON here (and the raw table as .npz)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.strengths = sorted(float(s) for s in args.strengths.split(","))
    if not all(0 < s <= MAX_STRENGTH for s in args.strengths):
        ap.error(f"--strengths: each in (0, {MAX_STRENGTH:g}]")
    faces, _ = drop_blank(load_split(args.data, "test"))
    faces = seeded_subset(faces, args.limit, args.seed)
    labels = faces.labels.numpy()
    src, tgt = translation_pairs(labels)
    idn = src < args.identity_faces
    if args.table:
        z = np.load(args.table)
        m = {k: z[k] for k in z.files if k != "strengths"}
        args.strengths = [float(s) for s in z["strengths"]]
    else:
        m = measure(args, faces, src, tgt, idn)
        if args.out:
            np.savez_compressed(Path(args.out).with_suffix(".npz"),
                                strengths=np.array(args.strengths), **m)
    rows = []
    for i, s in enumerate(args.strengths):
        rows.append({"rule": f"strength {s:g}",
                     **score(m, np.full(len(tgt), i), idn, args.strengths)})
    for tau in (float(t) for t in args.taus.split(",")):
        rows.append({"rule": f"guide tau {tau:g}", **score(m, adaptive(m["guide"], tau), idn,
                                                               args.strengths)})
    keys = [k for k in rows[0] if k != "rule"]
    print("\n| rule | " + " | ".join(keys) + " |\n" + "|---" * (len(keys) + 1) + "|")
    for r in rows:
        print(f"| {r['rule']} | " + " | ".join(
            f"{r[k]:.2f}" if k == "mean strength" else f"{100 * r[k]:.1f} %" for k in keys)
            + " |")
    for family in ("strength", "guide"):
        ok = [r for r in rows if r["rule"].startswith(family) and r["kept"] >= args.bar]
        best = max(ok, key=lambda r: r["J1"]) if ok else None
        print(f"best {family} rule keeping >= {args.bar:g}: "
              + (f"{best['rule']}, J1 {100 * best['J1']:.1f} %" if best else "none"))
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"checkpoint": args.checkpoint, "guide": args.guide, "faces": len(labels),
             "identity_faces": args.identity_faces, "strengths": args.strengths,
             "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
