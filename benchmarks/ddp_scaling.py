"""Data-parallel scaling: training images/s with 1 process vs N processes under torchrun.

Each configuration is launched with real torchrun (`python -m torch.distributed.run
--standalone`); with more than one process the workers run the training code's own path:
`distributed()` (gloo on CPU, NCCL on CUDA), DistributedDataParallel for G and D, Batches
slicing each rank's share of the global batch, `train_step`. The model is the paper's size
(Config defaults: G width 32, D width 64).

Batch: --batch-size is per process (weak scaling, the way `ccyclegan train` counts it under
torchrun): N processes train on a global batch of N x batch per step. With --strong the
global batch stays --batch-size and each of N processes gets batch / N.

On a CPU the cores are split between the processes (--threads per process defaults to
cores // N), so 2 processes x 1 thread compete with 1 process x 2 threads for the same
cores; gains come only from parallelism the single process does not already get from its
threads. Prints one JSON object.

    python benchmarks/ddp_scaling.py [--procs 1,2] [--steps 10] [--batch-size 64]
                                     [--precision fp32|bf16] [--device cpu] [--strong]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def worker(a: argparse.Namespace) -> None:
    """One rank, inside the process group (as `ccyclegan train` runs under torchrun)."""
    from ccyclegan.core.runtime import distributed

    torch.set_num_threads(a.threads)
    with distributed(a.device):
        res = measure(a)  # a function, so its DDP wrappers are gone before the group is
    if res is not None:
        Path(a.json_out).write_text(json.dumps(res))


def measure(a: argparse.Namespace) -> dict | None:
    """Build the run as `train()` does and time --steps full training steps."""
    import torch.distributed as dist

    from ccyclegan.core.config import Config
    from ccyclegan.core.data import FaceData
    from ccyclegan.core.runtime import dist_info, resolve_device, resolve_precision
    from ccyclegan.train.batches import Batches
    from ccyclegan.train.loop import make_state, train_step, wrap_ddp

    cfg = Config(batch_size=a.batch_size, device=a.device, precision=a.precision,
                 threads=a.threads)
    rank, world = dist_info()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    amp = resolve_precision(cfg.precision, device)
    st = make_state(cfg, device)
    if world > 1:
        wrap_ddp(st, device)
    g = torch.Generator().manual_seed(0)
    n = 4 * cfg.batch_size * world  # 4 global batches: no epoch change in the timing
    data = FaceData(torch.randint(0, 256, (n, 1, 48, 48), dtype=torch.uint8, generator=g),
                    torch.arange(n) % 7)
    batches = Batches(data, cfg.batch_size, 0, True, "random", device, rank, world)

    def run(steps: int) -> float:
        if world > 1:
            dist.barrier()
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            train_step(st, *batches.get(st.step % batches.steps_per_epoch), amp)
            st.step += 1
        _sync(device)
        if world > 1:
            dist.barrier()  # the slowest rank sets the pace
        return time.perf_counter() - t

    run(a.warmup)
    dt = run(a.steps)
    if rank != 0:
        return None
    return {"processes": world, "threads_per_process": torch.get_num_threads(),
            "batch_per_process": cfg.batch_size, "global_batch": cfg.batch_size * world,
            "device": str(device), "precision": str(amp or "fp32"),
            "ms_per_step": round(1000 * dt / a.steps, 1),
            "images_per_s": round(a.steps * cfg.batch_size * world / dt, 1)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def launch(nproc: int, a: argparse.Namespace, out: Path) -> dict:
    cores = os.cpu_count() or 1
    threads = a.threads or max(1, cores // nproc)
    batch = a.batch_size // nproc if a.strong else a.batch_size
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", str(nproc), __file__, "--worker", "--json-out", str(out),
           "--steps", str(a.steps), "--warmup", str(a.warmup), "--batch-size", str(batch),
           "--threads", str(threads), "--device", a.device, "--precision", a.precision]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{nproc} processes failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", default="1,2", help="process counts to compare")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64,
                   help="per process (global with --strong)")
    p.add_argument("--strong", action="store_true", help="fixed global batch")
    p.add_argument("--threads", type=int, default=0, help="per process; 0: cores // procs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "auto"])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json-out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a)
        return
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "torch": torch.__version__, "model": "paper size: gen_channels 32, disc_channels 64",
           "batch": ("global, split over processes" if a.strong else "per process"),
           "steps": a.steps, "warmup": a.warmup,
           "load_average_before": [round(x, 2) for x in load] if load else None, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in a.procs.split(",")):
            out["runs"].append(launch(n, a, Path(tmp) / f"{n}.json"))
    base = out["runs"][0]["images_per_s"]
    for r in out["runs"]:
        r["speedup"] = round(r["images_per_s"] / base, 2)
        r["efficiency"] = round(r["speedup"] / (r["processes"] / out["runs"][0]["processes"]), 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
