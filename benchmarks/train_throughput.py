"""Training throughput: full CCycleGAN steps (D and G updates) per second, fp32 vs bf16.

Prints one JSON object: images/s for each precision, the model's FLOPs per training image,
and the machine's measured matmul GFLOP/s in both precisions, so the figure can be read as a
share of what the processor can do.

    python benchmarks/train_throughput.py [--steps 30] [--batch-size 64] [--compile]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ccyclegan.core.config import Config
from ccyclegan.core.runtime import resolve_device, resolve_precision
from ccyclegan.train.loop import TrainState, make_state, train_step


def matmul_gflops(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def batch(cfg: Config, device: torch.device, step: int):
    g = torch.Generator().manual_seed(step)
    b = cfg.batch_size
    x = (torch.rand(b, 1, 48, 48, generator=g) * 2 - 1).to(device)
    y = torch.randint(0, 7, (b,), generator=g).to(device)
    y_t = (y + torch.randint(1, 7, (b,), generator=g).to(device)) % 7
    return x, y, torch.arange(b, device=device), y_t


def flops_per_image(st: TrainState, cfg: Config, device, amp) -> float:
    x, y, src, y_t = batch(cfg, device, 0)
    with FlopCounterMode(display=False) as fc:
        train_step(st, x, y, src, y_t, amp)
    return fc.get_total_flops() / cfg.batch_size


def time_steps(cfg: Config, precision: str, steps: int, warmup: int) -> dict:
    device = resolve_device(cfg.device)
    amp = resolve_precision(precision, device)
    st = make_state(cfg, device)
    if cfg.compile:
        st.G_train, st.D_train = torch.compile(st.G), torch.compile(st.D)
    batches = [batch(cfg, device, i) for i in range(4)]
    for i in range(warmup):
        train_step(st, *batches[i % 4], amp)
        st.step += 1
    _sync(device)
    t = time.perf_counter()
    for i in range(steps):
        train_step(st, *batches[i % 4], amp)
        st.step += 1
    _sync(device)
    dt = time.perf_counter() - t
    st_flops = make_state(cfg, device)
    return {"images_per_s": round(steps * cfg.batch_size / dt, 1),
            "ms_per_step": round(1000 * dt / steps, 1),
            "gflop_per_image": round(flops_per_image(st_flops, cfg, device, None) / 1e9, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--precisions", default="fp32,bf16")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = Config(batch_size=a.batch_size, device=a.device, compile=a.compile)
    device = resolve_device(a.device)
    out = {"device": str(device), "cpu": platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(), "torch": torch.__version__,
           "batch_size": a.batch_size, "compile": a.compile,
           "d_steps_per_g": cfg.d_steps_per_g, "targets": cfg.targets}
    for prec in a.precisions.split(","):
        dtype = torch.float32 if prec == "fp32" else torch.bfloat16
        res = time_steps(cfg, prec, a.steps, a.warmup)
        res["matmul_gflops"] = round(matmul_gflops(dtype, device), 1)
        res["achieved_gflops"] = round(res["images_per_s"] * res["gflop_per_image"], 1)
        out[prec] = res
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
