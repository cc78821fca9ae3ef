"""Condition scale and strength per target emotion, chosen by measurement: read several
strength_sweep.py tables of one file (each at its own condition scale, same faces), and pick
for every target the (scale, strength) whose mix gives the highest judge reading while the
same-person share over all targets stays at or above --bar (and, with --min-target, every
target reads at least that share by each judge the tables hold). Exact (dynamic programming over
the count of kept translations), so a grid of any size is searched. Prints the choice, its
overall shares and the `export` command that ships it.

    python experiments/pair_release/setting_mix.py runs/sweep_cs*.json --bar 0.915
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from strength_sweep import counts, fed_ratio, overall, subset_pairs  # this folder's sweep

from ccyclegan.core.data import EMOTIONS


def options(paths: list[str]) -> tuple[dict[str, dict[tuple[float, float], dict]], dict]:
    """opts[emotion][(scale, strength)] = {J1, [J2], kept} over every table, and the tables'
    common subset settings (faces, identity faces). Tables that measured realism add the
    judge's FED of each setting ("fed") and the floor per emotion (subset["fed_floor"])."""
    opts: dict[str, dict[tuple[float, float], dict]] = {e: {} for e in EMOTIONS}
    subset = None
    floor = None
    for p in paths:
        d = json.loads(Path(p).read_text())
        scale = d.get("condition_scale")
        if not isinstance(scale, int | float):
            raise SystemExit(f"{p}: no single condition scale recorded (sweep it again with "
                             "--condition-scale A)")
        this = {"faces": d["faces"], "identity_faces": d["identity_faces"]}
        if subset not in (None, this):
            raise SystemExit(f"{p}: measured on {this}, the others on {subset}")
        subset = this
        floor = floor or d.get("fed_floor")
        for e in EMOTIONS:
            for s, v in d["table"][e].items():
                fed = d["fed"][e][s] if "fed" in d else None
                opts[e][(float(scale), float(s))] = v if fed is None else {**v, "fed": fed}
    return opts, {**subset, "fed_floor": floor}


def at_least(opts, share: float) -> dict[str, dict[tuple[float, float], dict]]:
    """Only the settings that every judge in the table reads as their target on >= share."""
    return {e: {k: v for k, v in o.items() if min(v.get("J1", 0), v.get("J2", 1)) >= share}
            for e, o in opts.items()}


def best_choice(opts, n_expr: np.ndarray, n_kept: np.ndarray, bar: float, price: float = 0.0
                ) -> dict[str, tuple[float, float]] | None:
    """The per-target choice with the highest count-weighted judge reading whose kept count
    reaches bar x all identity-checked translations (None when none does); with a price, the
    reading less price x each chosen setting's FED (a Lagrange multiplier on realism)."""
    best: dict[int, tuple[float, list]] = {0: (0.0, [])}  # kept count -> (judge hits, choice)
    for t, e in enumerate(EMOTIONS):
        nxt: dict[int, tuple[float, list]] = {}
        for k, (j, choice) in best.items():
            for key, v in opts[e].items():
                kk = k + round(v["kept"] * n_kept[t])
                jj = j + v["J1"] * n_expr[t] - price * v.get("fed", 0.0)
                if kk not in nxt or nxt[kk][0] < jj:
                    nxt[kk] = (jj, [*choice, key])
        best = nxt
    ok = [(j, c) for k, (j, c) in best.items() if k >= bar * n_kept.sum() - 1e-9]
    if not ok:
        return None
    return dict(zip(EMOTIONS, max(ok, key=lambda jc: jc[0])[1], strict=True))


def realistic_choice(opts, n_expr, n_kept, bar: float, floor: dict[str, float],
                     max_fed: float) -> dict[str, tuple[float, float]] | None:
    """The best choice whose FED (mean over targets / mean floor) is at most max_fed: the
    smallest price on FED that brings it there (bisection). A choice on the hull of the
    reading-realism trade, so it may read a little less than the exact optimum."""
    def ratio(choice):
        return fed_ratio({e: opts[e][choice[e]]["fed"] for e in EMOTIONS}, floor)
    lo, hi = 0.0, float(n_expr.sum())  # at hi, one FED unit outweighs every judge hit
    choice = best_choice(opts, n_expr, n_kept, bar, hi)
    if choice is None or ratio(choice) > max_fed:
        return None
    for _ in range(40):
        mid = (lo + hi) / 2
        c = best_choice(opts, n_expr, n_kept, bar, mid)
        if c is not None and ratio(c) <= max_fed:
            hi, choice = mid, c
        else:
            lo = mid
    return choice


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tables", nargs="+", help="strength_sweep.py --out JSON files")
    ap.add_argument("--data", default="../shared/data/fer2013/fer2013.csv.gz")
    ap.add_argument("--seed", type=int, default=0, help="the sweeps' --seed")
    ap.add_argument("--bar", type=float, default=0.9, help="same-person share to keep")
    ap.add_argument("--min-target", type=float, default=0.0,
                    help="the least share of every target's translations each judge must read "
                         "as that target (the release asks 0.5; a margin guards the subset)")
    ap.add_argument("--max-fed", type=float,
                    help="the most FED (mean over targets against the mean floor) the choice "
                         "may have; needs tables that measured it")
    args = ap.parse_args()
    opts, subset = options(args.tables)
    opts = at_least(opts, args.min_target)
    if missing := [e for e in EMOTIONS if not opts[e]]:
        raise SystemExit(f"no setting of {', '.join(missing)} reads >= {args.min_target:g}")
    if args.max_fed is not None and (subset["fed_floor"] is None or any(
            "fed" not in v for o in opts.values() for v in o.values())):
        raise SystemExit("--max-fed: every table must have measured FED (strength_sweep.py "
                         "of this version)")
    _, src, tgt, idn = subset_pairs(args.data, subset["faces"], args.seed,
                                    subset["identity_faces"])
    n_expr, n_kept = counts(tgt, idn)
    if args.max_fed is None:
        choice = best_choice(opts, n_expr, n_kept, args.bar)
    else:
        choice = realistic_choice(opts, n_expr, n_kept, args.bar, subset["fed_floor"],
                                  args.max_fed)
    if choice is None:
        floor = f" with every target >= {args.min_target:g}" if args.min_target else ""
        floor += f" and FED <= {args.max_fed:g}x" if args.max_fed is not None else ""
        raise SystemExit(f"no choice on these tables keeps the person on >= {args.bar:g}{floor}")
    rows = {e: {k: v for k, v in opts[e][choice[e]].items() if k != "fed"} for e in EMOTIONS}
    feds = {e: opts[e][choice[e]].get("fed") for e in EMOTIONS}
    realism = subset["fed_floor"] is not None and None not in feds.values()
    print("| target | condition scale | strength | " + " | ".join(rows[EMOTIONS[0]])
          + (" | FED" if realism else "") + " |\n|---|---|---|"
          + "---|" * (len(rows[EMOTIONS[0]]) + realism))
    for e in EMOTIONS:
        a, s = choice[e]
        print(f"| {e} | {a:g} | {s:g} | " + " | ".join(
            f"{100 * v:.1f} %" for v in rows[e].values())
            + (f" | {feds[e]:.2f} (floor {subset['fed_floor'][e]:.2f})" if realism else "") + " |")
    print("overall: " + ", ".join(f"{k} {100 * v:.1f} %"
                                  for k, v in overall(rows, n_expr, n_kept).items())
          + (f", FED {fed_ratio(feds, subset['fed_floor']):.2f}x floor" if realism else ""))
    print("  export --condition-scale '" + ",".join(f"{e}={choice[e][0]:g}" for e in EMOTIONS)
          + "' --strength '" + ",".join(f"{e}={choice[e][1]:g}" for e in EMOTIONS) + "'")


if __name__ == "__main__":
    main()
