"""Checkpoints as safetensors: no pickles, atomic writes, clear errors on bad files.

A training checkpoint is one .safetensors file holding the weights of G, D (and the EMA
generator), both Adam states and the RNG states, with the config and progress as JSON in its
metadata, so a single rename makes it visible: a crash mid-write leaves the previous one intact.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted or does not fit the model."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp would create the file 0600; open it ourselves so the umask applies as usual
    tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 meta: dict[str, Any]) -> None:
    """Save tensors with JSON-encoded metadata, atomically."""
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    data = st_save(flat, metadata={"ccyclegan": json.dumps(meta)})
    atomic_write_bytes(path, data)


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    raw = path.read_bytes()
    try:
        tensors = st_load(raw)
        meta = _read_metadata(raw)
    except (SafetensorError, ValueError, OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors checkpoint "
                              f"(truncated or corrupted?): {e}") from None
    return tensors, meta


def _read_metadata(raw: bytes) -> dict[str, Any]:
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    meta = header.get("__metadata__", {}) or {}
    if "ccyclegan" not in meta:
        raise ValueError("metadata has no 'ccyclegan' entry: not written by ccyclegan")
    return json.loads(meta["ccyclegan"])


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def optimizer_to_tensors(opt: torch.optim.Optimizer, prefix: str
                         ) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Split an optimiser state into tensors (for safetensors) and JSON-able param groups."""
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            t = val if torch.is_tensor(val) else torch.tensor(val)
            tensors[f"{prefix}.{idx}.{key}"] = t
    return tensors, sd["param_groups"]


def optimizer_from_tensors(opt: torch.optim.Optimizer, prefix: str,
                           tensors: dict[str, torch.Tensor],
                           param_groups: list[dict[str, Any]]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in unprefixed(prefix, tensors).items():
        idx, key = k.split(".", 1)
        state.setdefault(int(idx), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": param_groups})


def load_module(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str,
                path: str | Path) -> None:
    """load_state_dict with an error that says which file and which tensors do not fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if wrong:
            k = wrong[0]
            parts.append(f"shape mismatch for {k}: file {tuple(state[k].shape)} "
                         f"vs model {tuple(own[k].shape)}")
        raise CheckpointError(f"{path}: {what} weights do not fit the model: " + "; ".join(parts))
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
