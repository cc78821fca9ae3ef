"""Edit strength per target emotion, chosen by measurement: translate a fixed PublicTest subset
at each strength s as `evaluate --intensity s` does, x + s (G(x|t) - x), and read every
(target, s) with the judges, dlib's same-person check and the judge's FED (the subset's
translations to t against all real PublicTest faces of t). Prints the table and the
`export --strength` specs of three rules that keep the person on at least --bar: one strength
for all targets, per target, and the best judge reading over every per-target choice. Strengths
over 1 amplify G's edit (clipped to the pixel range), for targets whose full edit keeps the
person with room to spare. The best-mix search visits every choice: keep the grid to 8 or fewer.

    python experiments/pair_release/strength_sweep.py runs/attention_conf --classifier runs/judge \\
        --second-classifier runs/judge2 --strengths 1,0.9,0.8,0.7,0.6 --out runs/sweep.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ccyclegan.classifier.nets import classify, load_classifier
from ccyclegan.core.data import EMOTIONS, NUM_CLASSES, drop_blank, load_split
from ccyclegan.core.generator_files import (
    MAX_STRENGTH,
    as_ensemble,
    load_generator,
    parse_condition_scale,
    strength_json,
)
from ccyclegan.evaluate import identity as face_id
from ccyclegan.evaluate.identity import FER_THRESHOLD
from ccyclegan.evaluate.metrics import fed_floor, frechet_from_features
from ccyclegan.evaluate.run import _translate, seeded_subset, translation_pairs


class MeanOfGenerators(torch.nn.Module):
    """Several generators as one for evaluate's encode-once / decode-per-target path: the
    output is the mean of theirs (strength 1 each), so the edit is the mean of their edits.
    An experiment (does averaging the edits of independently trained networks keep the person
    better at the same expression, as mirror averaging does?), not a shipped format."""

    def __init__(self, generators):
        super().__init__()
        self.members = torch.nn.ModuleList(generators)

    def encode(self, x):
        return [G.encode(x) for G in self.members]

    def decode(self, feats, c):
        return torch.stack([G.decode(f, c).float()
                            for G, f in zip(self.members, feats, strict=True)]).mean(0)


def window(size: int, ramp: float, floor: float) -> torch.Tensor:
    """[size, size] weights: 1 in the middle, falling linearly over `ramp` pixels to `floor` at
    the border (the product of a row and a column profile)."""
    i = torch.arange(size, dtype=torch.float32) + 0.5
    r = (torch.minimum(i, size - i) / ramp).clamp(max=1.0)
    return floor + (1 - floor) * r[:, None] * r[None, :]


class Windowed(torch.nn.Module):
    """A generator whose edit is weighted by a fixed window, x + W (G(x|t) - x): less change at
    the crop's border, where the face's outline, hair and background are (an experiment)."""

    def __init__(self, G, w: torch.Tensor):
        super().__init__()
        self.G, self.w = G, w

    def encode(self, x):
        return [x, self.G.encode(x)]

    def decode(self, feats, c):
        x, inner = feats
        return x + self.w * (self.G.decode(inner, c).float() - x)


def real_features(data: str, clf) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """The judge's features of every non-blank PublicTest face, their labels, and per emotion
    the FED floor (two random halves of its real faces, as evaluate's)."""
    real, _ = drop_blank(load_split(data, "test"))
    feats = classify(clf, real.images)[1].numpy().astype(np.float64)
    labels = real.labels.numpy()
    return feats, labels, fed_floor(feats, labels, seed=0)


def fed_ratio(fed: dict[str, float], floor: dict[str, float]) -> float:
    """Mean FED over the targets against the mean floor, as evaluate reports realism."""
    return float(np.mean([fed[e] for e in EMOTIONS]) / np.mean([floor[e] for e in EMOTIONS]))


def measure(args, faces, labels, src, tgt, idn):
    """table[emotion][strength] = {J1, J2, kept}: shares of that target's translations; the
    judge's FED of each (fed[emotion][strength]) and its floor per emotion; and the condition
    scale decoded under (the file's own unless --condition-scale)."""
    t0 = time.perf_counter()
    members = [as_ensemble(load_generator(p)[0]) for p in [args.checkpoint, *args.average_with]]
    for G in members:
        if not args.keep_strength:
            G.strength = 1.0  # the sweep blends G's full edit itself
        if args.flip_average is not None:
            G.flip_average = args.flip_average
        if args.condition_scale is not None:
            G.condition_scale = args.condition_scale
    G = members[0] if len(members) == 1 else MeanOfGenerators(members)
    if args.window:
        ramp, floor = (float(v) for v in args.window.split(","))
        G = Windowed(G, window(48, ramp, floor))
    pairs = torch.from_numpy(src), torch.from_numpy(tgt)
    judges = {"J1": load_classifier(args.classifier)[0]}
    if args.second_classifier:
        judges["J2"] = load_classifier(args.second_classifier)[0]
    embedder = face_id.FaceEmbedder()
    emb_real = embedder.embed(faces.images[:args.identity_faces, 0].numpy())
    f_real, real_labels, floor = real_features(args.data, judges["J1"])
    table: dict[str, dict[str, dict[str, float]]] = {e: {} for e in EMOTIONS}
    fed: dict[str, dict[str, float]] = {e: {} for e in EMOTIONS}
    for s in args.strengths:
        out = _translate(G, faces.images, 128, s)[pairs]  # evaluate's translations
        read = {n: classify(clf, out) for n, clf in judges.items()}
        hits = {n: p.argmax(1).numpy() == tgt for n, (p, _) in read.items()}
        f_out = read["J1"][1].numpy().astype(np.float64)
        emb = embedder.embed(out[torch.from_numpy(np.flatnonzero(idn)), 0].numpy())
        kept = np.linalg.norm(emb_real[src[idn]] - emb, axis=1) < FER_THRESHOLD
        for t, e in enumerate(EMOTIONS):
            table[e][f"{s:g}"] = {**{n: float(h[tgt == t].mean()) for n, h in hits.items()},
                                  "kept": float(kept[tgt[idn] == t].mean())}
            fed[e][f"{s:g}"] = frechet_from_features(f_out[tgt == t], f_real[real_labels == t])
        ratio = fed_ratio({e: fed[e][f"{s:g}"] for e in EMOTIONS}, floor)
        print(f"strength {s:g}: " + ", ".join(f"{n} {100 * h.mean():.1f} %"
                                              for n, h in hits.items())
              + f", same person {100 * kept.mean():.1f} %, FED {ratio:.2f}x floor "
              f"({time.perf_counter() - t0:.0f} s)")
    return table, {"fed": fed, "fed_floor": floor}, members[0].condition_scale


def subset_pairs(data: str, limit: int, seed: int, identity_faces: int):
    """The sweep's faces (a seeded PublicTest subset, blanks dropped), its translation pairs
    (src, tgt) and which of them get the same-person check (src < identity_faces)."""
    faces, _ = drop_blank(load_split(data, "test"))
    faces = seeded_subset(faces, limit, seed)
    src, tgt = translation_pairs(faces.labels.numpy())
    return faces, src, tgt, src < identity_faces


def counts(tgt: np.ndarray, idn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Translations per target, and identity-checked ones per target: the weights that turn
    per-target shares into overall ones."""
    return np.bincount(tgt, minlength=NUM_CLASSES), np.bincount(tgt[idn], minlength=NUM_CLASSES)


def overall(rows: dict[str, dict[str, float]], n_expr: np.ndarray, n_kept: np.ndarray
            ) -> dict[str, float]:
    """Overall shares from per-target ones (rows[emotion] = {J1, [J2], kept}), count-weighted."""
    out = {}
    for k in rows[EMOTIONS[0]]:
        w = n_kept if k == "kept" else n_expr
        out[k] = float(sum(w[t] * rows[e][k] for t, e in enumerate(EMOTIONS)) / w.sum())
    return out


def mix(table, choice: dict[str, float], n_expr: np.ndarray, n_kept: np.ndarray
        ) -> dict[str, float]:
    """Overall shares when each target gets its own strength."""
    return overall({e: table[e][f"{choice[e]:g}"] for e in EMOTIONS}, n_expr, n_kept)


def best_mix(table, strengths: list[float], n_expr: np.ndarray, n_kept: np.ndarray,
             bar: float) -> dict[str, float] | None:
    """Every per-target choice on the grid: the best judge reading with overall kept >= bar
    (None when no choice reaches the bar)."""
    j1 = np.array([[table[e][f"{s:g}"]["J1"] for s in strengths] for e in EMOTIONS])
    kp = np.array([[table[e][f"{s:g}"]["kept"] for s in strengths] for e in EMOTIONS])
    idx = np.stack(np.meshgrid(*[np.arange(len(strengths))] * NUM_CLASSES, indexing="ij"),
                   -1).reshape(-1, NUM_CLASSES)
    rows = np.arange(NUM_CLASSES)
    expr = (j1[rows, idx] * n_expr).sum(1) / n_expr.sum()
    kept = (kp[rows, idx] * n_kept).sum(1) / n_kept.sum()
    if not (kept >= bar).any():
        return None
    best = idx[np.argmax(np.where(kept >= bar, expr, -1.0))]
    return {e: strengths[i] for e, i in zip(EMOTIONS, best, strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default="../shared/data/fer2013/fer2013.csv.gz")
    ap.add_argument("--classifier")
    ap.add_argument("--second-classifier")
    ap.add_argument("--strengths", default="1,0.9,0.8,0.7,0.6")
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--identity-faces", type=int, default=150)
    ap.add_argument("--bar", type=float, default=0.9, help="same-person share to keep")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--flip-average", action=argparse.BooleanOptionalAction, default=None,
                    help="average each edit with its mirror image's, mirrored back (default: "
                         "the file's own)")
    ap.add_argument("--average-with", default="", metavar="CKPT[,CKPT...]",
                    help="more generators: each edit is the mean of theirs and the checkpoint's")
    ap.add_argument("--window", metavar="RAMP,FLOOR",
                    help="weight each edit by a window: full in the middle, falling over RAMP "
                         "pixels to FLOOR at the crop's border")
    ap.add_argument("--condition-scale", metavar="A",
                    help="the decoder reads A x the one-hot condition, as `export "
                         "--condition-scale` ships: one number or 'EMOTION=A,...' "
                         "(default: the file's own)")
    ap.add_argument("--keep-strength", action="store_true",
                    help="start from the file's own strength (per target, as shipped): "
                         "--strengths 1 then reads the shipped edit itself")
    ap.add_argument("--table", help="a JSON this script wrote: apply the rules to its table "
                                    "instead of measuring again")
    ap.add_argument("--out", help="write the table as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.strengths = [float(s) for s in args.strengths.split(",")]
    args.average_with = [p for p in args.average_with.split(",") if p]
    if args.condition_scale is not None:
        args.condition_scale = parse_condition_scale(args.condition_scale)
    if len(args.strengths) > 8 or not all(0 < s <= MAX_STRENGTH for s in args.strengths):
        ap.error(f"--strengths: at most 8, each in (0, {MAX_STRENGTH:g}]")
    faces, src, tgt, idn = subset_pairs(args.data, args.limit, args.seed, args.identity_faces)
    labels = faces.labels.numpy()
    if args.table:
        saved = json.loads(Path(args.table).read_text())
        table, scale = saved["table"], saved.get("condition_scale")
        realism = {k: saved[k] for k in ("fed", "fed_floor") if k in saved}
        args.strengths = sorted({float(s) for row in table.values() for s in row}, reverse=True)
    elif not args.classifier:
        ap.error("--classifier is needed to measure (or give --table)")
    else:
        table, realism, scale = measure(args, faces, labels, src, tgt, idn)
    n_expr, n_kept = counts(tgt, idn)
    judges = [k for k in next(iter(table["angry"].values())) if k != "kept"]
    # rule 1: per target, the largest strength whose same-person share reaches the bar
    per_target = {}
    for e in EMOTIONS:
        ok = [s for s in args.strengths if table[e][f"{s:g}"]["kept"] >= args.bar]
        per_target[e] = max(ok) if ok else min(args.strengths)
    # rule 2: the best judge reading whose overall same-person share reaches the bar
    best = best_mix(table, args.strengths, n_expr, n_kept, args.bar)
    print("\n| target | " + " | ".join(f"s={s:g} " + "/".join([*judges, "kept"])
                                       for s in args.strengths) + " |")
    print("|---" * (len(args.strengths) + 1) + "|")
    for e in EMOTIONS:
        print(f"| {e} | " + " | ".join(" / ".join(
            f"{100 * table[e][f'{s:g}'][k]:.0f}" for k in [*judges, "kept"])
            for s in args.strengths) + " |")
    ok = [s for s in args.strengths  # the largest single strength that keeps the bar overall
          if mix(table, dict.fromkeys(EMOTIONS, s), n_expr, n_kept)["kept"] >= args.bar]
    rules = {}
    for name, choice in (("one strength", dict.fromkeys(EMOTIONS, max(ok)) if ok else None),
                         ("per target >= bar", per_target), ("best overall >= bar", best)):
        if choice is None:
            print(f"\n{name}: no choice on the grid keeps the person on >= {args.bar:g}")
            continue
        m = mix(table, choice, n_expr, n_kept)
        if "fed" in realism:
            m["fed_ratio"] = fed_ratio({e: realism["fed"][e][f"{choice[e]:g}"] for e in EMOTIONS},
                                       realism["fed_floor"])
        spec = ",".join(f"{e}={choice[e]:g}" for e in EMOTIONS)
        rules[name] = {"spec": spec, **m}
        print(f"\n{name}: " + ", ".join(f"{k} {v:.2f}x" if k == "fed_ratio" else
                                        f"{k} {100 * v:.1f} %" for k, v in m.items())
              + f"\n  export --strength '{spec}'")
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"checkpoint": args.checkpoint, "average_with": args.average_with,
             "condition_scale": None if scale is None else strength_json(scale),
             "faces": len(labels), "identity_faces": args.identity_faces, "bar": args.bar,
             "table": table, **realism, "rules": rules,
             "spec": rules["per target >= bar"]["spec"]}, indent=1))  # per-target rule


if __name__ == "__main__":
    main()
