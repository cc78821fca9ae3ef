"""One G(x|c) call of a fresh Generator(32), 1 thread, timed in a new process per variant and
round, after importing the variant's modules from the variant's package tree: does what a
package imports (not its model code) move eager latency?

    python benchmarks/import_probe.py '{"before": ["/tmp/d1dfe70/src", ""],
        "after+translate": ["/tmp/5d546c1/src", "ccyclegan.translate.api"]}' 5

Each variant is [SRC, comma-separated modules imported first]; rounds alternate the variants.
Prints each variant's per-process medians (ms per call) and their median.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time


def child(src: str, pre: list[str]) -> float:
    sys.path.insert(0, src)
    import importlib

    for name in pre:
        importlib.import_module(name)
    import torch

    torch.set_num_threads(1)
    from ccyclegan.core.models import Generator

    torch.manual_seed(0)
    G = Generator(32).eval()
    x = torch.randn(1, 1, 48, 48)
    c = torch.zeros(1, 7)
    c[0, 3] = 1
    times = []
    with torch.inference_mode():
        for _ in range(200):
            G(x, c)
        for _ in range(7):
            t0 = time.perf_counter()
            for _ in range(200):
                G(x, c)
            times.append((time.perf_counter() - t0) / 200 * 1e3)
    return statistics.median(times)


def main() -> None:
    if sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], [m for m in sys.argv[3].split(",") if m])))
        return
    variants = json.loads(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    res: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, (src, pre) in variants.items():
            out = subprocess.run([sys.executable, __file__, "--child", src, pre],
                                 capture_output=True, text=True, check=True).stdout
            res[name].append(float(out))
    for name, v in res.items():
        print(f"{name:24s} median {statistics.median(v):.3f} ms  per process "
              + " ".join(f"{t:.2f}" for t in v))


if __name__ == "__main__":
    main()
