"""CCycleGAN training, top to bottom: data, models, one optimisation step, the loop.

A step is one discriminator update on a batch, plus a generator update every
`d_steps_per_g` steps. Data order, flips and target emotions are pure functions of
(seed, step), so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import gc
import io
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ccyclegan import losses
from ccyclegan.augment import diff_augment
from ccyclegan.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    build_checked,
    check_on_meta,
    load_module,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    oserror_text,
    prefixed,
    save_tensors,
    unprefixed,
)
from ccyclegan.config import Config, ConfigError
from ccyclegan.data import (
    EMOTIONS,
    NUM_CLASSES,
    FaceData,
    blur_warning,
    drop_blank,
    load_split,
    normalize,
    rng_for,
)
from ccyclegan.models import (
    Discriminator,
    Generator,
    build_discriminator,
    build_generator,
    build_models,
    one_hot,
)

TIME_UP = 1000  # above any signal number: the max_minutes budget is spent
CKPT_NAME = "checkpoint.safetensors"
GEN_NAME = "generator.safetensors"
# Fields that may change when a run is resumed; everything else defines the run.
RESUMABLE_FIELDS = {"data", "out", "epochs", "max_steps", "max_minutes", "device", "precision",
                    "threads",
                    "compile", "log_every", "sample_every", "ckpt_every", "skip_nonfinite"}
# what train_step logs, in this order (the columns of metrics.csv between epoch and img_per_s)
LOG_KEYS = ("loss_D", "D_adv", "D_cl", "D_acc", "loss_G", "G_adv", "G_cl", "G_cyc", "G_acc",
            "D_gp", "G_expr", "G_mask")


class NonFiniteLossError(RuntimeError):
    """A loss (or gradient) became NaN or inf at `step`. The update was not applied, so the
    weights in memory and the last good checkpoint on disk stay finite."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


# --------------------------------------------------------------------------- runtime


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for fp32. auto: bf16/fp16 AMP on CUDA, fp32 on CPU."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("config field 'precision': fp16 needs CUDA; use bf16 on CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def dist_info() -> tuple[int, int]:
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
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() \
            or dist.is_initialized():
        yield
        return
    dev = resolve_device(device)
    kwargs: dict[str, Any] = {}
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
        kwargs["device_id"] = dev  # binds the communicator (and barriers) to this GPU
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", **kwargs)
    try:
        yield
    finally:
        # DDP wrappers sit in reference cycles and hold the group: collect them now, so the
        # group is torn down here and not at interpreter exit (where gloo can abort).
        gc.collect()
        dist.destroy_process_group()


def wrap_ddp(st: TrainState, device: torch.device) -> None:
    """Wrap G and D in DistributedDataParallel for the forward passes (st.G_train, st.D_train);
    st.G and st.D stay the raw modules for checkpoints, samples and the frozen D of the G step.

    DDP broadcasts rank 0's weights once here and, in every backward, averages the gradients
    over ranks. All losses are means over the rank's own batch, so with equal per-rank batches
    the averaged gradient is the gradient of the global-batch mean: a run on N processes of
    batch B computes what one process of batch N*B would (InstanceNorm is per-face; there is
    no BatchNorm whose statistics would depend on the split).
    """
    ids = [device.index] if device.type == "cuda" else None
    st.G_train = nn.parallel.DistributedDataParallel(st.G, device_ids=ids)
    st.D_train = nn.parallel.DistributedDataParallel(st.D, device_ids=ids)


def _max_over_ranks(value: int, device: torch.device) -> int:
    """The largest of every rank's value (NCCL needs the tensor on the GPU)."""
    return _maxes_over_ranks([value], device)[0]


def _maxes_over_ranks(values: list[int], device: torch.device) -> list[int]:
    """Element-wise maxima over ranks, in one collective."""
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [int(v) for v in t.tolist()]


# --------------------------------------------------------------------------- batches


class Batches:
    """Deterministic batches for any step: epoch permutation from (seed, epoch), flips and
    targets from (seed, step). Each rank takes its slice of the global batch.

    Under torchrun this plays the role of DistributedSampler(shuffle=True, seed=seed,
    drop_last=True) with set_epoch(epoch): every rank draws the same permutation for the epoch
    and keeps a disjoint shard, so ranks see distinct faces and a new split every epoch. We
    do it ourselves because a step-indexed global batch gives two guarantees the sampler
    does not: (1) rank r's rows are rows [r*B, (r+1)*B) of the batch a single process with
    batch N*B would draw at that step (the sampler interleaves indices rank::N and pads), so
    a run does not depend on how the global batch is split, which is what the equivalence
    test checks; (2) any step can be drawn directly, so --resume restarts mid-epoch without
    replaying a loader. The tail of an epoch that does not fill a global batch is dropped (a
    different tail each epoch).
    """

    def __init__(self, data: FaceData, batch_size: int, seed: int, flip: bool, targets: str,
                 device: torch.device, rank: int = 0, world: int = 1):
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.batch_size, self.seed, self.flip, self.targets = batch_size, seed, flip, targets
        self.device, self.rank, self.world = device, rank, world
        self.global_batch = batch_size * world
        self.steps_per_epoch = len(data) // self.global_batch
        if self.steps_per_epoch == 0:
            raise ConfigError(f"config field 'batch_size': {len(data)} training images are "
                              f"fewer than one global batch of {self.global_batch}")
        self._perm_epoch, self._perm = -1, None

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x in [-1,1], labels, index into x per translation, target labels)."""
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm = torch.randperm(len(self.labels), generator=rng_for(self.seed, 1, epoch))
            self._perm_epoch = epoch
        g = rng_for(self.seed, 2, step)
        gb = self.global_batch
        flips = torch.rand(gb, generator=g) < 0.5
        offsets = torch.randint(1, NUM_CLASSES, (gb,), generator=g)
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        idx = self._perm[i * gb:(i + 1) * gb][lo:hi].to(self.device)
        x = normalize(self.images[idx])
        if self.flip:
            x = torch.where(flips[lo:hi].to(self.device)[:, None, None, None], x.flip(-1), x)
        y = self.labels[idx]
        if self.targets == "all":  # every face to each of the other 6 emotions
            k = torch.arange(1, NUM_CLASSES, device=self.device)
            src = torch.arange(len(y), device=self.device).repeat_interleave(NUM_CLASSES - 1)
            y_t = (y[src] + k.repeat(len(y))) % NUM_CLASSES
        else:  # one uniformly random other emotion per face
            src = torch.arange(len(y), device=self.device)
            y_t = (y + offsets[lo:hi].to(self.device)) % NUM_CLASSES
        return x, y, src, y_t


# --------------------------------------------------------------------------- state


@dataclass
class TrainState:
    cfg: Config
    G: Generator
    D: Discriminator
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    G_ema: Generator | None = None
    step: int = 0
    G_train: nn.Module | None = None  # DDP / compiled wrappers used for the forward passes
    D_train: nn.Module | None = None
    scaler_G: Any = None
    scaler_D: Any = None
    expr: list[nn.Module] = field(default_factory=list)  # frozen classifiers (lambda_expr)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def G_eval(self) -> Generator:
        return self.G_ema if self.G_ema is not None else self.G


def make_state(cfg: Config, device: torch.device) -> TrainState:
    torch.manual_seed(cfg.seed)
    G, D = build_models(cfg)
    G, D = G.to(device), D.to(device)
    betas = (cfg.beta1, cfg.beta2)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=betas)
    G_ema = copy.deepcopy(G).requires_grad_(False) if cfg.ema_decay > 0 else None
    return TrainState(cfg, G, D, opt_G, opt_D, G_ema, expr=load_expression_classifiers(cfg, device))


def load_expression_classifiers(cfg: Config, device: torch.device) -> list[nn.Module]:
    """The frozen classifiers of G's extra expression loss (none when lambda_expr is 0)."""
    if cfg.lambda_expr <= 0:
        return []
    from ccyclegan.classifier import load_classifier

    nets = []
    for path in (p.strip() for p in cfg.expr_classifier.split(",") if p.strip()):
        model, _ = load_classifier(path, device)
        nets.append(model.eval().requires_grad_(False))
    return nets


# --------------------------------------------------------------------------- one step


def train_step(st: TrainState, x: torch.Tensor, y: torch.Tensor, src: torch.Tensor,
               y_t: torch.Tensor, amp_dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """One D update and, every d_steps_per_g steps, one G update. Returns detached losses.

    Each update is applied only if its loss and gradients are finite on every rank (checked
    before the optimiser step, so the weights never become NaN/inf). Otherwise: raise
    NonFiniteLossError naming the step or, with cfg.skip_nonfinite, skip the rest of the step
    (a non-finite D update skips the G update too) and return {"skipped": 1} only; the reason
    is in st.extra["nonfinite"]."""
    cfg = st.cfg
    G = st.G if st.G_train is None else st.G_train
    D = st.D if st.D_train is None else st.D_train
    device = x.device
    update_g = st.step % cfg.d_steps_per_g == 0
    c_t = one_hot(y_t)
    logs: dict[str, torch.Tensor] = {}

    # Translate: encode each face once, decode under the target (and, for G, the source).
    recon = mask = None
    with autocast(device, amp_dtype), torch.set_grad_enabled(update_g):
        out = G(x, c_t, c_rec=one_hot(y) if update_g and cfg.cycle_mode != "cycle" else None,
                src=None if len(src) == len(x) else src,
                with_mask=update_g and cfg.output == "attention")
        fake, *rest = out if isinstance(out, tuple) else (out,)
        if update_g and cfg.cycle_mode != "cycle":
            recon, *rest = rest
        if rest:
            mask = rest[0]

    # D: real faces are real and carry their emotion (L_CL); translations are fake (L_RF).
    penalty = cfg.r1_gamma > 0 or cfg.adv_loss == "wgan-gp"
    with autocast(device, amp_dtype), torch.set_grad_enabled(True):
        real = x.detach().requires_grad_(cfg.r1_gamma > 0)
        parts = [real, fake.detach()]
        if cfg.adv_loss == "wgan-gp":  # points between each face and its translation
            eps = torch.rand(len(fake), 1, 1, 1, device=device)
            parts.append((eps * x[src] + (1 - eps) * fake.detach()).requires_grad_(True))
        rf, cl = D(diff_augment(torch.cat(parts), cfg.d_augment))
        n, m = len(x), len(fake)
        rf_real, rf_fake, cl_real = rf[:n], rf[n:n + m], cl[:n]
        d_adv = losses.d_adversarial(rf_real, rf_fake, cfg.adv_loss)
        d_cl = losses.d_classification(cl_real, y, cl[n:n + m], cfg.cl_loss)
        loss_d = d_adv + cfg.lambda_cl * d_cl
        if penalty:
            d_gp = rf.new_zeros((), dtype=torch.float32)
            if cfg.r1_gamma > 0:
                d_gp = d_gp + cfg.r1_gamma / 2 * losses.gradient_penalty(rf_real, real, 0.0)
            if cfg.adv_loss == "wgan-gp":
                d_gp = d_gp + cfg.lambda_gp * losses.gradient_penalty(rf[n + m:], parts[2], 1.0)
            loss_d = loss_d + d_gp
            logs["D_gp"] = d_gp
    if not _backward_step(loss_d, st.opt_D, st.scaler_D):
        return _nonfinite(st, "D", loss_d)
    logs.update(loss_D=loss_d, D_adv=d_adv, D_cl=d_cl,
                D_acc=(cl_real.argmax(1) == y).float().mean())

    if update_g:
        D_raw = st.D  # no DDP sync needed: D's weights do not change in the G step
        D_raw.requires_grad_(False)
        try:
            with autocast(device, amp_dtype):
                # the poster's three terms
                rf_fake, cl_fake = D_raw(diff_augment(fake, cfg.d_augment))
                g_adv = losses.g_adversarial(rf_fake, cfg.adv_loss)
                g_cl = losses.g_classification(cl_fake, y_t, cfg.cl_loss)
                g_cyc = fake.new_zeros((), dtype=torch.float32)
                if recon is not None:  # the poster's L_cyc: G_dec(G_enc(x)|y_x) vs x
                    g_cyc = g_cyc + losses.l1(recon, x)
                if cfg.cycle_mode in ("cycle", "both"):  # CycleGAN's G(G(x|y)|y_x)
                    g_cyc = g_cyc + losses.l1(G(fake, one_hot(y[src])), x[src])
                loss_g = g_adv + cfg.lambda_cl * g_cl + cfg.lambda_cyc * g_cyc
                # options
                if st.expr:  # frozen classifiers read the translation as its target
                    g_expr = torch.stack([losses.classification(
                        clf(diff_augment(fake, cfg.expr_augment)), y_t) for clf in st.expr]
                    ).mean()
                    loss_g = loss_g + cfg.lambda_expr * g_expr
                    logs["G_expr"] = g_expr
                if mask is not None:
                    g_mask = losses.attention_regularizer(mask)
                    loss_g = loss_g + cfg.lambda_mask * g_mask
                    logs["G_mask"] = g_mask
            stepped = _backward_step(loss_g, st.opt_G, st.scaler_G)
        finally:
            D_raw.requires_grad_(True)
        if not stepped:
            return _nonfinite(st, "G", loss_g)
        if st.G_ema is not None:
            update_ema(st.G_ema, st.G, cfg.ema_decay)
        logs.update(loss_G=loss_g, G_adv=g_adv, G_cl=g_cl, G_cyc=g_cyc,
                    G_acc=(cl_fake.argmax(1) == y_t).float().mean())
    return {k: v.detach().float() for k, v in logs.items()}


def lr_at(cfg: Config, step: int, total: int) -> float:
    """The learning rate of step `step` (0-based) of a run of `total` steps."""
    if cfg.lr_decay == "none" or total <= 1:
        return cfg.lr
    half = total // 2
    return cfg.lr * min(1.0, (total - step) / (total - half))


def _backward_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler) -> bool:
    """Backward, then the optimiser step if the loss and gradients are finite on every rank.
    Returns whether the step was taken.

    The backward always runs, so that under DDP every rank joins its gradient all-reduce; one
    more all-reduce (MIN of the finite flags) then gives every rank the same decision, so no
    rank steps while another skips. With a GradScaler (fp16) only the loss is checked here:
    inf gradients are the scaler's business (it skips that step and lowers the scale).
    """
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
    else:
        loss.backward()
    if not _finite_everywhere(loss, opt, grads=scaler is None):
        opt.zero_grad(set_to_none=True)
        return False
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    return True


def _finite_everywhere(loss: torch.Tensor, opt: torch.optim.Optimizer, grads: bool) -> bool:
    ok = torch.isfinite(loss.detach()).all()
    if grads:
        gs = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if gs:  # max |g| per tensor: NaN or inf iff some element is
            ok = ok & torch.isfinite(torch.stack(torch._foreach_norm(gs, math.inf))).all()
    flag = ok.to(torch.int32).reshape(1)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _nonfinite(st: TrainState, net: str, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    step = st.step + 1  # the step being taken, as metrics.csv numbers it
    value = float(loss.detach().float())
    where = (f"loss_{net} = {value}" if not math.isfinite(value)
             else f"loss_{net} = {value:.4g} is finite here, so: its gradients or another rank")
    msg = f"non-finite loss or gradient in the {net} update at step {step} ({where})"
    if not st.cfg.skip_nonfinite:
        raise NonFiniteLossError(msg, step=step)
    st.extra["nonfinite"] = msg
    return {"skipped": torch.ones(())}


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    e, m = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(e, m, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(st: TrainState, run_dir: Path, extra: dict[str, Any] | None = None) -> None:
    """Full training state in one atomic safetensors file, plus the generator alone for
    inference and a human-readable JSON of config and progress."""
    tensors = {**prefixed("G", st.G.state_dict()), **prefixed("D", st.D.state_dict())}
    if st.G_ema is not None:
        tensors.update(prefixed("G_ema", st.G_ema.state_dict()))
    tg, groups_g = optimizer_to_tensors(st.opt_G, "opt_G")
    td, groups_d = optimizer_to_tensors(st.opt_D, "opt_D")
    tensors.update(tg)
    tensors.update(td)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and st.G.out.weight.is_cuda:
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    progress = {"step": st.step, **(extra or {})}
    meta = {"kind": "train", "config": st.cfg.to_dict(), "progress": progress,
            "param_groups": {"opt_G": groups_g, "opt_D": groups_d}}
    save_tensors(run_dir / CKPT_NAME, tensors, meta)
    save_generator(run_dir / GEN_NAME, st.G_eval, st.cfg, progress)
    atomic_write_json(run_dir / "checkpoint.json",
                      {"config": st.cfg.to_dict(), "progress": progress})


def save_generator(path: Path, G: Generator, cfg: Config, progress: dict[str, Any],
                   half: bool = False) -> None:
    sd = {k: (v.half() if half and v.is_floating_point() else v)
          for k, v in G.state_dict().items()}
    save_tensors(path, sd, {"kind": "generator", "config": cfg.to_dict(), "progress": progress,
                            "emotions": list(EMOTIONS)})


def load_generator(path: str | Path, device: str | torch.device = "cpu"
                   ) -> tuple[Generator, Config, dict[str, Any]]:
    """Load a generator from generator.safetensors, a training checkpoint, or a run dir."""
    path = Path(path)
    if path.is_dir():
        cand = [path / GEN_NAME, path / CKPT_NAME]
        path = next((p for p in cand if p.is_file()), cand[0])
    tensors, meta = load_tensors(path)
    kind = meta.get("kind")
    if kind not in ("generator", "train"):
        raise CheckpointError(f"{path}: not a generator or training checkpoint "
                              f"(kind={str(kind)[:40]!r})")
    cfg = _config_from_meta(meta, path)
    if kind == "train":
        prefix = "G_ema" if any(k.startswith("G_ema.") for k in tensors) else "G"
        tensors = unprefixed(prefix, tensors)
    G = build_checked(lambda: build_generator(cfg), tensors, "generator", path)
    load_module(G, tensors, "generator", path)
    progress = meta.get("progress")
    return G.to(device).eval(), cfg, progress if isinstance(progress, dict) else {}


def load_checkpoint(st: TrainState, path: Path) -> dict[str, Any]:
    tensors, meta = load_tensors(path)
    if meta.get("kind") != "train":
        raise CheckpointError(f"{path}: not a training checkpoint "
                              f"(kind={str(meta.get('kind'))[:40]!r})")
    load_module(st.G, unprefixed("G", tensors), "G", path)
    load_module(st.D, unprefixed("D", tensors), "D", path)
    if st.G_ema is not None:
        ema = unprefixed("G_ema", tensors) or unprefixed("G", tensors)
        load_module(st.G_ema, ema, "G_ema", path)
    progress = meta.get("progress")
    try:
        step = progress["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"progress step must be an integer >= 0, got {str(step)[:40]}")
        groups = meta["param_groups"]
        optimizer_from_tensors(st.opt_G, "opt_G", tensors, groups["opt_G"])
        optimizer_from_tensors(st.opt_D, "opt_D", tensors, groups["opt_D"])
        torch.set_rng_state(tensors["rng.cpu"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: training state (progress, optimiser or RNG) is "
                              f"missing or does not fit: {why}") from None
    st.step = step
    return progress


def read_checkpoint_config(path: Path) -> Config:
    _, meta = load_tensors(path)
    return _config_from_meta(meta, path)


def verify_checkpoint(path: Path) -> Config:
    """The config of a training checkpoint, after checking (on the meta device: nothing is
    allocated) that its G, D and EMA tensors fit the models that config describes."""
    tensors, meta = load_tensors(path)
    if meta.get("kind") != "train":
        raise CheckpointError(f"{path}: not a training checkpoint "
                              f"(kind={str(meta.get('kind'))[:40]!r})")
    cfg = _config_from_meta(meta, path)
    check_on_meta(lambda: build_generator(cfg), unprefixed("G", tensors), "G", path)
    check_on_meta(lambda: build_discriminator(cfg), unprefixed("D", tensors), "D", path)
    if cfg.ema_decay > 0 and unprefixed("G_ema", tensors):
        check_on_meta(lambda: build_generator(cfg), unprefixed("G_ema", tensors), "G_ema", path)
    return cfg


def _config_from_meta(meta: dict[str, Any], path: Path) -> Config:
    if "config" not in meta:
        raise CheckpointError(f"{path}: checkpoint metadata has no config")
    try:
        return Config.from_dict(meta["config"], source=f"{path} (config)")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None


# --------------------------------------------------------------------------- logging


class MetricsLog:
    """metrics.csv (always) and TensorBoard (when installed). On resume, rows past the
    checkpoint are dropped so the log reads like one uninterrupted run."""

    def __init__(self, run_dir: Path, resume_step: int | None):
        self.path = run_dir / "metrics.csv"
        self.fields: list[str] | None = None
        if resume_step is not None and self.path.exists():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                # a crash can leave a half-written last row: keep complete rows only (G
                # columns may be empty: a window without a G step, d_steps_per_g > 1)
                rows = [r for r in reader
                        if None not in r and None not in r.values()
                        and r[reader.fieldnames[-1]] and _is_int(r.get("step"))
                        and int(r["step"]) <= resume_step]
                self.fields = list(reader.fieldnames or []) or None
            buf = io.StringIO()
            if self.fields and rows:
                w = csv.DictWriter(buf, self.fields)
                w.writeheader()
                w.writerows(rows)
            else:
                self.fields = None
            atomic_write_text(self.path, buf.getvalue())
        elif self.path.exists():
            self.path.unlink()
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except Exception:  # tensorboard is an optional extra
            self.tb = None

    def write(self, row: dict[str, float | None]) -> None:
        """Append a row; None (a loss not computed in this window) is an empty cell."""
        if self.fields is None:
            self.fields = list(row.keys())
            with self.path.open("w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and v is not None:
                    self.tb.add_scalar(k, v, int(row["step"]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _is_int(v: str | None) -> bool:
    return v is not None and v.strip().isdigit()


def sample_faces(data: FaceData, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n fixed faces cycling through the emotions, for comparable grids across steps."""
    picks: list[int] = []
    per_class = [torch.nonzero(data.labels == k).flatten().tolist() for k in range(NUM_CLASSES)]
    j = 0
    while len(picks) < min(n, len(data)):
        for k in range(NUM_CLASSES):
            if j < len(per_class[k]) and len(picks) < n:
                picks.append(per_class[k][j])
        j += 1
    idx = torch.tensor(picks, dtype=torch.long)
    return data.images[idx], data.labels[idx]


# --------------------------------------------------------------------------- the loop


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to stop after the current step and save; a second
    Ctrl-C interrupts at once."""

    def __init__(self):
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def train(cfg: Config, resume: bool = False, overrides: dict[str, Any] | None = None,
          progress_bar: bool = True) -> dict[str, Any]:
    """Train (or resume) a run in cfg.out. Returns a summary of the run."""
    run_dir = Path(cfg.out)
    ckpt_path = run_dir / CKPT_NAME
    if resume:
        if not ckpt_path.is_file():
            raise CheckpointError(f"{ckpt_path}: nothing to resume (no checkpoint in {run_dir})")
        saved = verify_checkpoint(ckpt_path).to_dict()
        saved["out"] = cfg.out  # the run is where its checkpoint is (a moved run stays moved)
        for k, v in (overrides or {}).items():
            if k not in RESUMABLE_FIELDS and saved.get(k) != v:
                raise ConfigError(f"config field '{k}' cannot change when resuming "
                                  f"(checkpoint has {saved.get(k)!r}, got {v!r})")
            saved[k] = v
        cfg = Config.from_dict(saved)
    if not cfg.data:
        raise ConfigError("config field 'data': give --data PATH (fer2013.csv or image folder)")
    with distributed(cfg.device):  # under torchrun: join the group, leave it at the end
        return _train(cfg, resume, progress_bar)


def _train(cfg: Config, resume: bool, progress_bar: bool) -> dict[str, Any]:
    run_dir = Path(cfg.out)
    ckpt_path = run_dir / CKPT_NAME
    rank, world = dist_info()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    amp_dtype = resolve_precision(cfg.precision, device)

    train_data = load_split(cfg.data, "train")
    n_blank = 0
    if cfg.drop_blank:
        train_data, n_blank = drop_blank(train_data)
    try:
        view_data = load_split(cfg.data, "test")
    except Exception:
        view_data = train_data
    warning = blur_warning(train_data, view_data) if rank == 0 else None
    if warning:
        print(f"ccyclegan: {warning}", file=sys.stderr, flush=True)
    faces, face_labels = sample_faces(view_data, cfg.n_sample_faces)

    st = make_state(cfg, device)
    if amp_dtype == torch.float16:
        st.scaler_G, st.scaler_D = torch.amp.GradScaler("cuda"), torch.amp.GradScaler("cuda")
    resumed: dict[str, Any] = {}
    if resume:  # every rank reads the file: each needs the Adam states, not only weights
        resumed = load_checkpoint(st, ckpt_path)
    if world > 1 and (cfg.r1_gamma > 0 or cfg.adv_loss == "wgan-gp"):
        raise ConfigError("gradient penalties (r1_gamma, adv_loss wgan-gp) need a double "
                          "backward, which DistributedDataParallel does not support: train "
                          "them in one process")
    if world > 1:
        lo, hi = -_max_over_ranks(-st.step, device), _max_over_ranks(st.step, device)
        if lo != hi:  # every rank sees the same lo, hi: all raise together, none hangs
            raise CheckpointError(f"{ckpt_path}: ranks resumed at different steps ({lo} to "
                                  f"{hi}); is --out on a filesystem that every node sees?")
        wrap_ddp(st, device)
    if cfg.compile:
        st.G_train = torch.compile(st.G if st.G_train is None else st.G_train)
        st.D_train = torch.compile(st.D if st.D_train is None else st.D_train)

    batches = Batches(train_data, cfg.batch_size, cfg.seed, cfg.flip, cfg.targets, device,
                      rank, world)
    total = cfg.max_steps or cfg.epochs * batches.steps_per_epoch
    main = rank == 0
    skipped = int(resumed.get("skipped_steps", 0) or 0) if resume else 0
    logs_: list[MetricsLog] = []  # the metrics log, once rank 0 has opened it

    def write_phase(writes: list[tuple[str, Any]], stopping: int = 0) -> int:
        """Rank 0 runs the writes; an OSError (disk full, read-only, ...) becomes a
        CheckpointWriteError naming the last good checkpoint. Then every rank learns, in one
        collective (which also keeps the others from running ahead of rank 0's files), whether
        the writes failed and whether any rank was asked to stop; on a failure all raise."""
        err: CheckpointWriteError | None = None
        if main:
            for what, write in writes:
                try:
                    write()
                except OSError as e:
                    err = CheckpointWriteError(f"cannot write {what} to {run_dir}: "
                                               f"{oserror_text(e)}; {_last_good(ckpt_path)}")
                    break
        if world > 1:
            failed, stopping = _maxes_over_ranks([int(err is not None), stopping], device)
            if failed and err is None:
                err = CheckpointWriteError(f"rank 0 cannot write to {run_dir} (its error says "
                                           f"why); {_last_good(ckpt_path)}")
        if err is not None:
            raise err
        return stopping

    def set_up() -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "samples").mkdir(exist_ok=True)
        for stale in run_dir.glob(".*.tmp"):  # left by a crash mid-write; never read
            stale.unlink(missing_ok=True)

    write_phase([("the run directory", set_up),
                 ("config.json", lambda: cfg.save(run_dir / "config.json")),
                 ("metrics.csv", lambda: logs_.append(
                     MetricsLog(run_dir, st.step if resume else None)))] if main else [])
    log = logs_[0] if logs_ else None
    if main:
        print(f"ccyclegan: {len(train_data)} training faces ({n_blank} blank dropped), "
              f"{batches.steps_per_epoch} steps/epoch, {total} steps, device {device}, "
              f"precision {amp_dtype or 'fp32'}, world {world}", flush=True)
        was = resumed.get("global_batch", batches.global_batch)
        if was != batches.global_batch:
            print(f"ccyclegan: warning: resuming with a global batch of {batches.global_batch} "
                  f"(checkpoint: {was}, world size {resumed.get('world_size')}); the data order "
                  f"and step count no longer match the original run", flush=True)

    bar = None
    if main and progress_bar:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=st.step, unit="step", dynamic_ncols=True)
    say = bar.write if bar is not None else (lambda m: print(m, flush=True))
    window: dict[str, list[torch.Tensor]] = {}
    t0, seen0 = time.perf_counter(), st.step
    interrupted = None

    trained_s = float(resumed.get("train_seconds", 0) or 0) if resume else 0.0
    t_run = time.perf_counter()

    def train_seconds() -> float:
        return trained_s + time.perf_counter() - t_run

    def progress() -> dict[str, Any]:
        return {"epoch": st.step / batches.steps_per_epoch, "world_size": world,
                "global_batch": batches.global_batch, "skipped_steps": skipped,
                "train_seconds": round(train_seconds(), 1)}

    def save_sample(*names: str) -> None:
        buf = io.BytesIO()
        _grid(st, faces, face_labels).save(buf, format="PNG")
        for name in names:  # atomic, like the checkpoint: never a half-written PNG
            atomic_write_bytes(run_dir / "samples" / name, buf.getvalue())

    try:
        with _StopFlag() as stop:
            while st.step < total:
                x, y, src, y_t = batches.get(st.step)
                for opt in (st.opt_G, st.opt_D):
                    for group in opt.param_groups:
                        group["lr"] = lr_at(cfg, st.step, total)
                try:
                    logs = train_step(st, x, y, src, y_t, amp_dtype)
                except NonFiniteLossError as e:  # every rank raises at the same step
                    raise NonFiniteLossError(
                        f"{e}; training stopped; {_last_good(ckpt_path)} in {run_dir} "
                        f"(--skip-nonfinite skips such steps instead)", step=e.step) from None
                st.step += 1
                if "skipped" in logs:
                    skipped += 1
                    if main:
                        say(f"ccyclegan: warning: {st.extra.pop('nonfinite', 'non-finite loss')}"
                            f"; update skipped (--skip-nonfinite; {skipped} skipped so far)")
                else:
                    for k, v in logs.items():
                        window.setdefault(k, []).append(v)
                is_log = st.step % cfg.log_every == 0 or st.step == total
                is_ckpt = st.step % cfg.ckpt_every == 0
                is_sample = st.step % cfg.sample_every == 0
                writes: list[tuple[str, Any]] = []
                if is_log:  # under DDP, the mean over ranks: the global batch's losses
                    row = _flush(window, st.step, batches, t0, seen0)
                    row["skipped_steps"] = skipped
                    bad = [k for k, v in row.items() if v is not None and not math.isfinite(v)]
                    if bad:
                        raise NonFiniteLossError(
                            f"non-finite loss ({', '.join(bad)}) by step {st.step}; "
                            f"{_last_good(ckpt_path)} in {run_dir}", step=st.step)
                    t0, seen0 = time.perf_counter(), st.step
                    if main:
                        writes.append(("metrics.csv", lambda r=row: log.write(r)))
                        if bar is not None:
                            bar.set_postfix({k: f"{row[k]:.3f}" for k in
                                             ("loss_D", "loss_G", "G_cyc", "D_acc")
                                             if row.get(k) is not None})
                if bar is not None:
                    bar.update(1)
                if is_ckpt and main:
                    writes.append(("checkpoint", lambda: save_checkpoint(st, run_dir,
                                                                          progress())))
                if is_sample and main:
                    writes.append(("a sample grid",
                                   lambda: save_sample(f"step_{st.step:07d}.png")))
                stopping = stop.signal or 0
                if is_log and main and cfg.max_minutes and train_seconds() >= 60 * cfg.max_minutes:
                    stopping = max(stopping, TIME_UP)  # a finished run, decided by rank 0
                if is_log or is_ckpt or is_sample:
                    # Ranks may get a signal at different steps; they decide together at the
                    # next log/sample/checkpoint step (all ranks reach the same ones), so none
                    # leaves the others waiting in a collective. torchrun waits
                    # --shutdown-timeout s.
                    stopping = write_phase(writes, stopping)
                elif world > 1:
                    stopping = 0
                if stopping == TIME_UP:
                    break
                if stopping:
                    interrupted = stopping
                    break
            if bar is not None:
                bar.close()
                bar = None
            final = interrupted is None
            names = [f"step_{st.step:07d}.png"] + (["final.png"] if final else [])
            write_phase([("checkpoint", lambda: save_checkpoint(st, run_dir, progress())),
                         ("a sample grid", lambda: save_sample(*names))] if main else [])
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    return {"step": st.step, "total_steps": total, "interrupted": interrupted,
            "run_dir": str(run_dir), "steps_per_epoch": batches.steps_per_epoch,
            "rank": rank, "world_size": world, "global_batch": batches.global_batch,
            "skipped_steps": skipped}


def _last_good(ckpt_path: Path) -> str:
    """What a failed run leaves: the checkpoint on disk, read back in full (checksum)."""
    if not ckpt_path.is_file():
        return "no checkpoint has been written yet"
    try:
        _, meta = load_tensors(ckpt_path)
        step = int(meta["progress"]["step"])
    except (CheckpointError, KeyError, TypeError, ValueError) as e:
        return f"the checkpoint on disk cannot be read back ({e})"
    return f"the last good checkpoint (step {step}) is intact"


def _grid(st: TrainState, faces: torch.Tensor, labels: torch.Tensor):
    from ccyclegan.visualize import translation_grid

    return translation_grid(st.G_eval, faces, labels)


def _flush(window: dict[str, list[torch.Tensor]], step: int, batches: Batches, t0: float,
           seen0: int) -> dict[str, float | None]:
    """The window's mean losses (None where none was computed: no G step in the window, or
    every step in it skipped), epoch and images/s."""
    row: dict[str, float | None] = {"step": step,
                                    "epoch": round(step / batches.steps_per_epoch, 4)}
    row.update(dict.fromkeys(LOG_KEYS))
    keys = list(window)  # the same keys in the same order on every rank
    if keys:
        means = torch.stack([torch.stack(window[k]).mean() for k in keys])
        if batches.world > 1:  # equal per-rank batches: mean of rank means = global mean
            dist.all_reduce(means)
            means /= batches.world
        row.update(zip(keys, means.tolist(), strict=True))
    window.clear()
    dt = max(time.perf_counter() - t0, 1e-9)
    row["img_per_s"] = (step - seen0) * batches.global_batch / dt
    return row
