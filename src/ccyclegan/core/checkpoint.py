"""Checkpoints as safetensors: no pickles, atomic writes, clear errors on bad files.

A training checkpoint is one .safetensors file holding the weights of G, D (and the EMA
generator), both Adam states and the RNG states, with the config and progress as JSON in its
metadata, so a single rename makes it visible: a crash mid-write leaves the previous one intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

M = TypeVar("M", bound=torch.nn.Module)

BUNDLED_MODEL = "weights/ccyclegan_fer2013.safetensors"  # package data, relative to ccyclegan/
NO_BUNDLED_MODEL = (
    "no bundled model exists yet (ccyclegan/" + BUNDLED_MODEL + " is not in this install); "
    "train one with `ccyclegan train` and pass --checkpoint RUN_DIR (Python: "
    "ExpressionTranslator.load('RUN_DIR'))")


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted or does not fit the model."""


class CheckpointWriteError(CheckpointError):
    """A run's files (checkpoint, samples, metrics, config) cannot be written: the disk is full,
    the folder is read-only, ... The message says what the last good checkpoint on disk is."""


# The evaluation classifiers shipped with the package (Training rows only, never in a training
# loss), fp16; docs/evaluate.md says how each was trained and how it scores. The second judge
# (a ResNet, another architecture family) is used where the install has it.
BUNDLED_JUDGE = "weights/judge_vgg64.safetensors"
BUNDLED_SECOND_JUDGE = "weights/judge_resnet32.safetensors"
# ... and the frozen classifier of the expression loss (`--expr-classifier bundled`, the quick
# recipe): another network, never a judge
BUNDLED_EXPR_CLASSIFIER = "weights/expr_vgg32.safetensors"


def bundled_model_path(name: str = BUNDLED_MODEL) -> Path | None:
    """A file shipped as package data (default: the model), or None while there is none."""
    try:
        ref = resources.files("ccyclegan").joinpath(name)
    except (ModuleNotFoundError, FileNotFoundError):
        return None
    path = Path(str(ref))
    return path if path.is_file() else None


def oserror_text(e: OSError) -> str:
    """'[Errno 28] No space left on device', without the temp file's name."""
    if e.errno is not None:
        return f"[Errno {e.errno}] {e.strerror or os.strerror(e.errno)}"
    return str(e) or type(e).__name__




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


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Indented JSON (config, progress, metrics), written atomically like the checkpoints."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


DIGEST_KEY = "ccyclegan.blake2b"  # checksum of every tensor's name, dtype, shape and bytes


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """safetensors has no checksum: a flipped bit in the data would load as a wrong weight.
    We store this digest in the header and compare it on load."""
    h = hashlib.blake2b(digest_size=16)
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 meta: dict[str, Any]) -> None:
    """Save tensors with JSON-encoded metadata and a checksum, atomically."""
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    data = st_save(flat, metadata={"ccyclegan": json.dumps(meta),
                                   DIGEST_KEY: tensors_digest(flat)})
    atomic_write_bytes(path, data)


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a ccyclegan safetensors file (never a pickle). CheckpointError
    if the file is missing, is not safetensors, is truncated, fails its checksum, or its
    metadata is not a JSON object."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {oserror_text(e)}") from None
    try:
        tensors = st_load(raw)
        meta, digest = _read_metadata(raw)
    except (SafetensorError, ValueError, TypeError, OSError, RecursionError) as e:
        why = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a valid safetensors checkpoint "
                              f"(truncated or corrupted?): {why}") from None
    if digest is not None and tensors_digest(tensors) != digest:
        raise CheckpointError(f"{path}: checksum mismatch: the tensor data is corrupted")
    return tensors, meta


def _read_metadata(raw: bytes) -> tuple[dict[str, Any], str | None]:
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    meta = (header.get("__metadata__") if isinstance(header, dict) else None) or {}
    if "ccyclegan" not in meta:
        raise ValueError("metadata has no 'ccyclegan' entry: not written by ccyclegan")
    out = json.loads(meta["ccyclegan"])
    if not isinstance(out, dict):
        raise ValueError(f"ccyclegan metadata must be a JSON object, got {type(out).__name__}")
    digest = meta.get(DIGEST_KEY)
    return out, digest if isinstance(digest, str) else None


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


def check_fits(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str,
               path: str | Path, finite: bool = True) -> None:
    """CheckpointError naming the file and the tensors unless state has exactly the module's
    tensors, with their shapes (and, if finite, no NaN or inf)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            shown = [k[:60] for k in unexpected[:3]]
            parts.append(f"unexpected {shown}{'...' if len(unexpected) > 3 else ''}")
        if wrong:
            k = wrong[0]
            parts.append(f"shape mismatch for {k}: file {tuple(state[k].shape)} "
                         f"vs model {tuple(own[k].shape)}")
        raise CheckpointError(f"{path}: {what} weights do not fit the model: " + "; ".join(parts))
    if finite:
        bad = sorted(k for k, v in state.items()
                     if v.is_floating_point() and not bool(torch.isfinite(v).all()))
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise CheckpointError(f"{path}: {what} weights are not finite (NaN or inf in "
                                  f"{bad[0]}{more})")


def load_module(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str,
                path: str | Path) -> None:
    """load_state_dict with an error that says which file and which tensors do not fit."""
    check_fits(module, state, what, path)
    own = module.state_dict()
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def check_on_meta(factory: Callable[[], torch.nn.Module], state: dict[str, torch.Tensor],
                  what: str, path: str | Path) -> None:
    """Build factory() on the meta device (no memory) and check that state fits it. Do this
    before building a model from a checkpoint's config: a config claiming a huge model is
    refused before anything is allocated (a model that fits is no bigger than the file)."""
    with torch.device("meta"):
        ghost = factory()
    check_fits(ghost, state, what, path, finite=False)


def build_checked(factory: Callable[[], M], state: dict[str, torch.Tensor], what: str,
                  path: str | Path) -> M:
    """factory(), once check_on_meta has found that state fits it."""
    check_on_meta(factory, state, what, path)
    return factory()
