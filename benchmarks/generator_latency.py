"""Per-face latency of generator files on onnxruntime, timed side by side.

One generator pass (batch 1, one face, one target) on an onnxruntime session made exactly as
the package makes it (`translate.backends.onnx_session`: all cores unless --threads, worker
threads that busy-wait between the graph's kernels and stop when a run returns); --sleeping
also times each file on a session whose threads sleep between kernels (the package's until
2026-12-07). The sessions are timed in turns, --rounds times --reps calls each after a
warm-up, so that a machine whose speed drifts (a shared build machine does) slows them alike;
prints each session's median and fastest round, in ms.

    python benchmarks/generator_latency.py FILE [FILE ...] [--threads 2] [--rounds 12] [--sleeping]

Needs the export extra (onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="generator files or run directories")
    ap.add_argument("--threads", type=int, default=None, help="default: every core")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--reps", type=int, default=150)
    ap.add_argument("--sleeping", action="store_true",
                    help="also time a session whose worker threads never busy-wait")
    args = ap.parse_args()

    from translate_latency import plain_session  # this folder's

    from ccyclegan.translate.api import ExpressionTranslator
    from ccyclegan.translate.backends import onnx_session
    from ccyclegan.translate.export import onnx_bytes

    sessions = {}
    for path in args.models:
        tr = ExpressionTranslator.load(path)
        model = onnx_bytes(tr._backend.G, tr.config.to_dict())
        sessions[path] = onnx_session(Path(path), args.threads, None, model)
        if args.sleeping:
            sessions[f"{path} (sleeping threads)"] = plain_session(model, args.threads,
                                                                  spinning=False)
    feed = {"face": np.random.default_rng(0).uniform(-1, 1, (1, 1, 48, 48)).astype(np.float32),
            "condition": np.eye(7, dtype=np.float32)[3:4]}
    rounds: dict[str, list[float]] = {p: [] for p in sessions}
    for _ in range(args.rounds):
        for path, session in sessions.items():
            for _ in range(10):
                session.run(None, feed)
            times = []
            for _ in range(args.reps):
                t = time.perf_counter()
                session.run(None, feed)
                times.append(time.perf_counter() - t)
            rounds[path].append(1000 * statistics.median(times))
    for path, ms in rounds.items():
        print(f"{path}: median {statistics.median(ms):.3f} ms, fastest round {min(ms):.3f} ms "
              f"({args.rounds} rounds of {args.reps}, threads {args.threads or 'all'})")


if __name__ == "__main__":
    main()
