"""The poster's hyper-parameter study: a grid over lr, lambda_cl and lambda_cyc, each setting
trained for the same step budget in its own subfolder of --out, then evaluated on one fixed,
seeded subset of the test faces. Resumable: finished trainings and evaluations are kept,
an interrupted training continues from its checkpoint.

Writes sweep.csv, sweep.md (a table) and sweep.png (FED per setting, with the real-vs-real
floor) to --out.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import typing
from pathlib import Path
from typing import Any

from ccyclegan.core.checkpoint import atomic_write_json, atomic_write_text
from ccyclegan.core.config import Config, ConfigError
from ccyclegan.core.plots import bar_chart
from ccyclegan.core.run import say
from ccyclegan.evaluate.run import evaluate
from ccyclegan.train.loop import train

FIELDS = ["setting", "lr", "lambda_cl", "lambda_cyc", "steps", "expression_accuracy",
          "fed_mean_targets", "fed_overall", "fed_floor", "recon_l1", "recon_ssim",
          "change_outside", "fid_mean_targets"]


def setting_name(lr: float, lambda_cl: float, lambda_cyc: float) -> str:
    return f"lr{lr:g}_cl{lambda_cl:g}_cyc{lambda_cyc:g}"


def _step_of(run: Path) -> int:
    info = run / "checkpoint.json"
    if not info.is_file():
        return -1
    try:
        return int(json.loads(info.read_text())["progress"]["step"])
    except (ValueError, KeyError, TypeError):
        return -1


def _read_json(path: Path) -> Any:
    """An earlier evaluation's metrics.json, or None if missing or unreadable (then it is
    evaluated again)."""
    try:
        m = json.loads(path.read_text())
        ok = isinstance(m, dict) and all(isinstance(m.get(k), dict) for k in ("sample", "model"))
        return m if ok else None
    except (OSError, ValueError):
        return None


def _mean(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def _row(name: str, lr: float, cl: float, cyc: float, m: dict[str, Any]) -> dict[str, Any]:
    mod = m["model"]
    fid = mod.get("fid")
    return {
        "setting": name, "lr": lr, "lambda_cl": cl, "lambda_cyc": cyc,
        "steps": m["generator_step"],
        "expression_accuracy": mod["expression_accuracy"]["overall"],
        "fed_mean_targets": _mean([e["frechet"] for e in mod["fed"]["per_target"].values()]),
        "fed_overall": mod["fed"]["overall"]["frechet"],
        "fed_floor": _mean([e["frechet"] for e in m["floor"]["fed"]["per_emotion"].values()]),
        "recon_l1": mod["reconstruction"]["l1"], "recon_ssim": mod["reconstruction"]["ssim"],
        "change_outside": mod["translation_change"]["outside"],
        "fid_mean_targets": None if fid is None else _mean(
            [e["frechet"] for e in fid["per_target"].values()]),
    }


def sweep(data: str, out: str | Path, classifier: str | Path, lrs: list[float],
          lambda_cls: list[float], lambda_cycs: list[float], max_steps: int,
          eval_limit: int = 500, seed: int = 0, base: dict[str, Any] | None = None,
          fid: bool = False, inception_weights: str | None = None, threads: int = 0,
          progress_bar: bool = True, log: typing.Callable[[str], None] = say
          ) -> dict[str, Any]:
    """Train and evaluate every setting of the grid (skipping what is already done)."""
    if max_steps <= 0:
        raise ConfigError("sweep: --max-steps must be > 0 (the same budget for every setting)")
    if not (lrs and lambda_cls and lambda_cycs):
        raise ConfigError("sweep: every grid axis needs at least one value")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = {"data": str(data), "classifier": str(classifier), "lr": lrs, "lambda_cl": lambda_cls,
            "lambda_cyc": lambda_cycs, "max_steps": max_steps, "eval_limit": eval_limit,
            "seed": seed, "base": base or {}, "fid": fid}
    atomic_write_json(out / "sweep.json", spec)
    rows: list[dict[str, Any]] = []
    grid = list(itertools.product(lrs, lambda_cls, lambda_cycs))
    for k, (lr, cl, cyc) in enumerate(grid, 1):
        name = setting_name(lr, cl, cyc)
        run = out / name
        fields = {**(base or {}), "data": str(data), "out": str(run), "lr": lr,
                  "lambda_cl": cl, "lambda_cyc": cyc, "max_steps": max_steps, "seed": seed}
        if threads:
            fields["threads"] = threads
        cfg = Config.from_dict(fields, source=f"sweep setting {name}")
        step = _step_of(run)
        if step >= max_steps:
            log(f"sweep [{k}/{len(grid)}] {name}: trained ({step} steps)")
        else:
            log(f"sweep [{k}/{len(grid)}] {name}: "
                + (f"resuming at step {step}" if step >= 0 else "training"))
            overrides = {f: fields[f] for f in ("data", "out", "max_steps", "threads")
                         if f in fields}
            res = train(cfg, resume=step >= 0, overrides=overrides, progress_bar=progress_bar)
            if res["interrupted"]:
                log(f"sweep: interrupted in {name} at step {res['step']}; run again to resume")
                return {"interrupted": True, "rows": rows}
        eval_dir = run / "eval"
        mpath = eval_dir / "metrics.json"
        m = _read_json(mpath)
        if (m is None or m.get("generator_step") != max_steps or m["sample"]["seed"] != seed
                or m["sample"]["limit"] != eval_limit or (fid and m["model"]["fid"] is None)):
            m = evaluate(run, data, classifier, out=eval_dir, limit=eval_limit, seed=seed,
                         inception_weights=inception_weights, use_inception=fid,
                         threads=threads, log=log)
        rows.append(_row(name, lr, cl, cyc, m))

    buf = io.StringIO()
    w = csv.DictWriter(buf, FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "sweep.csv", buf.getvalue())
    atomic_write_text(out / "sweep.md", render_table(rows, spec))
    floor = rows[0]["fed_floor"] if rows else None
    bar_chart([r["setting"] for r in rows], [r["fed_mean_targets"] for r in rows],
              title=f"FED per setting ({max_steps} steps each, {eval_limit or 'all'} test faces)",
              ylabel="FED, mean over target emotions (lower is better)",
              floor=floor).save(out / "sweep.png")
    log(f"sweep: wrote {out}/sweep.csv, sweep.md, sweep.png")
    return {"interrupted": False, "rows": rows}


def render_table(rows: list[dict[str, Any]], spec: dict[str, Any]) -> str:
    def f(v: Any, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    lines = ["# Hyper-parameter sweep", "",
             f"{spec['max_steps']} steps per setting, evaluated on "
             f"{spec['eval_limit'] or 'all'} test faces (seed {spec['seed']}). FED: mean over "
             "the 7 target emotions of the Frechet distance on the classifier's features "
             "(lower is better); FED floor: the same mean for two random halves of the real faces "
             "of each emotion (real vs real).", "",
             "| setting | lr | λ_cl | λ_cyc | expression acc. | FED | FED overall | FED floor |"
             " recon. L1 | recon. SSIM | change outside box | FID |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    best = min((r["fed_mean_targets"] for r in rows if r["fed_mean_targets"] is not None),
               default=None)
    for r in rows:
        fed = f(r["fed_mean_targets"], ".3f")
        if best is not None and r["fed_mean_targets"] == best:
            fed = f"**{fed}**"
        lines.append(
            f"| {r['setting']} | {r['lr']:g} | {r['lambda_cl']:g} | {r['lambda_cyc']:g} | "
            f"{f(r['expression_accuracy'], '.1%')} | {fed} | {f(r['fed_overall'], '.3f')} | "
            f"{f(r['fed_floor'], '.3f')} | {f(r['recon_l1'], '.4f')} | "
            f"{f(r['recon_ssim'], '.3f')} | {f(r['change_outside'], '.4f')} | "
            f"{f(r['fid_mean_targets'], '.2f')} |")
    lines += ["", "![FED per setting](sweep.png)", ""]
    return "\n".join(lines)
