"""Where the tensors live: device, autocast precision, and the torchrun process group.

Shared by training, the classifier, evaluation and translation; nothing here knows about GANs.
"""

from __future__ import annotations

import contextlib
import gc
import os
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ccyclegan.core.config import ConfigError


def error_reason(e: BaseException, prefer: str = "") -> str:
    """The line of an exception's message worth one line of a user's error: the first (the
    exception's type where it says nothing), or the first that holds prefer (a C++ compile
    error's first line says only that; the compiler's "error:" line says why); at most 200
    characters."""
    lines = str(e).strip().splitlines() or [type(e).__name__]
    return next((ln.strip() for ln in lines if prefer and prefer in ln), lines[0])[:200]


def resolve_device(name: str) -> torch.device:
    """"auto": CUDA when available, else the CPU; anything else as torch.device reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def rank_device(name: str, world: int) -> torch.device:
    """resolve_device(name); on CUDA with more than one process, this process's GPU
    (LOCAL_RANK), made the current one."""
    device = resolve_device(name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for fp32. auto: bf16/fp16 AMP on CUDA, fp32 on CPU."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("config field 'precision': fp16 needs CUDA; use bf16 on CPU")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        warnings.warn(f"precision bf16: this CPU ({torch.backends.cpu.get_cpu_capability()}) "
                      "has no native bf16 (AVX512-BF16 or AMX), so bf16 autocast is emulated "
                      "and about 15x slower than fp32 here; use --precision fp32", stacklevel=2)
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (else autocast emulates it, slowly)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True  # cannot tell: say nothing


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for dtype, or nothing for fp32 (None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def distributed(device: str = "auto"):
    """Join the process group torchrun describes for the duration of the block.

    Active only when launched with more than one process (WORLD_SIZE > 1 in the environment)
    and no group exists yet; a group the caller created stays the caller's. The backend
    follows the device: NCCL for CUDA (each process on GPU LOCAL_RANK), gloo for the CPU.
    Rank, world size and the rendezvous come from torchrun's variables (env:// init).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available() or dist.is_initialized():
        yield
        return
    dev = rank_device(device, world)
    kwargs: dict[str, Any] = {}
    if dev.type == "cuda":
        kwargs["device_id"] = dev  # binds the communicator (and barriers) to this GPU
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", **kwargs)
    try:
        yield
    finally:
        # DDP wrappers sit in reference cycles and hold the group: collect them now, so the
        # group is torn down here and not at interpreter exit (where gloo can abort).
        gc.collect()
        dist.destroy_process_group()


def ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """module in DistributedDataParallel: rank 0's weights broadcast once, gradients averaged
    over ranks in every backward."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def maxes_over_ranks(values: list[int], device: torch.device) -> list[int]:
    """Element-wise maxima of every rank's values, in one collective (NCCL needs the tensor
    on the GPU)."""
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [int(v) for v in t.tolist()]


def all_ranks_true(flag: torch.Tensor) -> bool:
    """Whether a boolean scalar tensor is true on every rank (one MIN all-reduce under a
    process group of more than one; otherwise just its value)."""
    flag = flag.to(torch.int32).reshape(1)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())
