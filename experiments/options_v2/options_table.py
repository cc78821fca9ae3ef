"""One markdown table of training options from their `ccyclegan evaluate` outputs, for the model
card: expression accuracy under both judges, the same-person share, FED against its floor,
reconstruction and the share of unchanged requests, with each run's steps and training time.

    python experiments/options_v2/options_table.py runs/baseline runs/guided ...
        # each RUN/eval/metrics.json
    python experiments/options_v2/options_table.py runs/guided_norm:eval_a0.8      # RUN:EVAL_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def progress_of(run: Path, step: int) -> dict:
    """The training progress (steps, train_seconds) of the evaluated step: the run's
    checkpoint.json, or a kept copy (checkpoint_*.json) when the run went on after it."""
    for path in [run / "checkpoint.json", *sorted(run.glob("checkpoint_*.json"))]:
        prog = json.loads(path.read_text())["progress"]
        if prog["step"] == step:
            return prog
    return {"step": step}


def row(spec: str) -> str:
    run, _, ev = spec.partition(":")
    run = Path(run)
    m = json.loads((run / (ev or "eval") / "metrics.json").read_text())
    prog = progress_of(run, m["generator_step"])
    sec, per, mod = m.get("second_judge"), m.get("person"), m["model"]
    # FED as the model card states it: the mean over the 7 targets against the mean floor
    fed = sum(v["frechet"] for v in mod["fed"]["per_target"].values()) / 7
    floor = sum(v["frechet"] for v in m["floor"]["fed"]["per_emotion"].values()) / 7
    cells = [
        f"`{run.name}`" + (f" (intensity {m['intensity']})" if m.get("intensity", 1) != 1 else ""),
        f"{prog['step']:,}",
        f"{prog.get('train_seconds', 0) / 60:.0f} min" if prog.get("train_seconds") else "n/a",
        f"{100 * mod['expression_accuracy']['overall']:.1f} %",
        f"{100 * sec['expression_accuracy']['overall']:.1f} %" if sec else "n/a",
        " / ".join(f"{100 * mod['expression_accuracy']['per_target'][e]:.0f}"
                   for e in mod["expression_accuracy"]["per_target"]),
        f"{100 * per['kept'][str(per['thresholds']['fer_1pct_far'])]:.1f} %" if per else "n/a",
        f"{fed / floor:.2f}x",
        f"{mod['reconstruction']['l1']:.3f}",
        f"{100 * mod['unchanged']['share']:.1f} %",
        f"{mod['unchanged']['mean_change_grey_levels']:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="RUN or RUN:EVAL_DIR (default eval)")
    runs = p.parse_args().runs
    print("| run | steps | training | judge | 2nd judge | judge per target (an / di / fe / "
          "ha / sa / su / ne) | same person | FED / floor | recon. L1 | unchanged | "
          "mean change (grey levels) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(row(run))


if __name__ == "__main__":
    main()
