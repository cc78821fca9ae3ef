"""CCycleGAN training, top to bottom: the state, one optimisation step, the loop.

A step is one discriminator update on a batch, plus a generator update every
`d_steps_per_g` steps. The losses are losses.py's, the batches batches.py's (a pure function
of seed and step, so a resumed run sees exactly the batches an uninterrupted one would), and
what the run writes, runlog.py's.
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ccyclegan.classifier.nets import load_classifier
from ccyclegan.core import losses
from ccyclegan.core.augment import diff_augment
from ccyclegan.core.checkpoint import BUNDLED_EXPR_CLASSIFIER, CheckpointError, bundled_model_path
from ccyclegan.core.config import Config, ConfigError
from ccyclegan.core.data import FaceData, blur_warning, drop_blank, load_split
from ccyclegan.core.generator_files import (
    CKPT_NAME,
    copy_generator_weights,
    load_checkpoint,
    load_generator,
    verify_checkpoint,
)
from ccyclegan.core.models import Discriminator, Generator, build_models, one_hot
from ccyclegan.core.run import StopFlag, resumed_settings
from ccyclegan.core.runtime import (
    all_ranks_true,
    autocast,
    ddp,
    dist_info,
    distributed,
    maxes_over_ranks,
    rank_device,
    resolve_precision,
)
from ccyclegan.train.batches import Batches
from ccyclegan.train.runlog import TIME_UP, NonFiniteLossError, RunLog

# Fields that may change when a run is resumed; everything else defines the run.
RESUMABLE_FIELDS = {"data", "out", "epochs", "max_steps", "max_minutes", "device", "precision",
                    "threads",
                    "compile", "log_every", "sample_every", "ckpt_every", "skip_nonfinite"}


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
    teacher: nn.Module | None = None  # frozen generator whose edits G learns (lambda_distill)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def G_eval(self) -> Generator:
        return self.G_ema if self.G_ema is not None else self.G


def make_state(cfg: Config, device: torch.device) -> TrainState:
    torch.manual_seed(cfg.seed)
    G, D = build_models(cfg)
    if cfg.init_from.strip():
        copy_generator_weights(G, cfg.init_from.strip())
    G, D = G.to(device), D.to(device)
    betas = (cfg.beta1, cfg.beta2)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=betas)
    G_ema = copy.deepcopy(G).requires_grad_(False) if cfg.ema_decay > 0 else None
    return TrainState(cfg, G, D, opt_G, opt_D, G_ema, expr=load_expression_classifiers(cfg, device),
                      teacher=load_teacher(cfg, device))


def load_expression_classifiers(cfg: Config, device: torch.device) -> list[nn.Module]:
    """The frozen classifiers of G's extra expression loss (none when lambda_expr is 0)."""
    if cfg.lambda_expr <= 0:
        return []
    nets = []
    for path in (p.strip() for p in cfg.expr_classifier.split(",") if p.strip()):
        if path == "bundled":
            path = bundled_model_path(BUNDLED_EXPR_CLASSIFIER)
            if path is None:
                raise ConfigError("config field 'expr_classifier': no bundled loss classifier "
                                  f"in this install (ccyclegan/{BUNDLED_EXPR_CLASSIFIER})")
        model, _ = load_classifier(path, device)
        nets.append(model.eval().requires_grad_(False))
    return nets


def wrap_ddp(st: TrainState, device: torch.device) -> None:
    """Wrap G and D in DistributedDataParallel for the forward passes (st.G_train, st.D_train);
    st.G and st.D stay the raw modules for checkpoints, samples and the frozen D of the G step.

    All losses are means over the rank's own batch, so with equal per-rank batches the
    averaged gradient is the gradient of the global-batch mean: a run on N processes of
    batch B computes what one process of batch N*B would (InstanceNorm is per-face; there is
    no BatchNorm whose statistics would depend on the split).
    """
    st.G_train, st.D_train = ddp(st.G, device), ddp(st.D, device)


def load_teacher(cfg: Config, device: torch.device) -> nn.Module | None:
    """The frozen generator of the distillation loss (None when lambda_distill is 0), with
    the settings its file was exported with (ensemble, mirror averaging, strengths)."""
    if cfg.lambda_distill <= 0:
        return None
    teacher, _, _ = load_generator(cfg.teacher.strip(), device)
    return teacher.float().eval().requires_grad_(False)


# --------------------------------------------------------------------------- one step


def train_step(st: TrainState, x: torch.Tensor, y: torch.Tensor, src: torch.Tensor,
               y_t: torch.Tensor, amp_dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """One D update (when D is used) and, every d_steps_per_g steps, one G update. Returns
    detached losses.

    x: faces in [-1, 1] with emotions y; face src[i] is translated to emotion y_t[i].
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
    reconstruct = update_g and cfg.cycle_mode != "cycle" and cfg.lambda_cyc > 0
    logs: dict[str, torch.Tensor] = {}

    # 1. Translate: encode each face once, decode it under its target emotion and, for G's
    #    L_cyc, under its own (the poster's reconstruction G_dec(G_enc(x)|y_x)).
    c_t = one_hot(y_t)
    with autocast(device, amp_dtype), torch.set_grad_enabled(update_g):
        out = G(x, c_t, c_rec=one_hot(y) if reconstruct else None,
                src=None if len(src) == len(x) else src,
                with_mask=update_g and cfg.output in ("attention", "warp"))
    fake, *rest = out if isinstance(out, tuple) else (out,)
    recon = rest.pop(0) if reconstruct else None
    mask, flow = rest if rest else (None, None)  # the attention/warp mask A, the warp's field

    # 2. D update: L_RF (real faces are real, translations fake) + lambda_cl L_CL (real faces
    #    carry their emotion), plus the gradient penalties when chosen. No D at all when
    #    neither term reaches G (a distillation alone).
    if uses_d(cfg):
        d_logs = _d_update(st, D, x, y, src, fake, amp_dtype)
        if "skipped" in d_logs:
            return d_logs
        logs.update(d_logs)

    # 3. G update, D frozen: lambda_adv L_RF + lambda_cl L_CL + lambda_cyc L_cyc, plus the
    #    options.
    if update_g:
        st.D.requires_grad_(False)  # the raw D: its weights do not change here, no DDP sync
        try:
            with autocast(device, amp_dtype):
                logs["G_cyc"] = g_cyc = _l_cyc(G, cfg, x, y, src, fake, recon)
                loss_g = cfg.lambda_cyc * g_cyc
                if uses_d(cfg):
                    rf_fake, cl_fake = st.D(diff_augment(fake, cfg.d_augment))
                    logs["G_adv"] = g_adv = losses.g_adversarial(rf_fake, cfg.adv_loss)
                    logs["G_cl"] = g_cl = losses.g_classification(cl_fake, y_t, cfg.cl_loss)
                    logs["G_acc"] = (cl_fake.argmax(1) == y_t).float().mean()
                    loss_g = loss_g + cfg.lambda_adv * g_adv + cfg.lambda_cl * g_cl
                for name, (weight, term) in _g_options(st, x, src, y_t, c_t, fake, mask,
                                                       flow).items():
                    logs[name] = term
                    loss_g = loss_g + weight * term
            stepped = _backward_step(loss_g, st.opt_G, st.scaler_G)
        finally:
            st.D.requires_grad_(True)
        if not stepped:
            return _nonfinite(st, "G", loss_g)
        if st.G_ema is not None:
            update_ema(st.G_ema, st.G, cfg.ema_decay)
        logs["loss_G"] = loss_g
    return {k: v.detach().float() for k, v in logs.items()}


def _g_options(st: TrainState, x: torch.Tensor, src: torch.Tensor, y_t: torch.Tensor,
               c_t: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor | None,
               flow: torch.Tensor | None) -> dict[str, tuple[float, torch.Tensor]]:
    """G's optional loss terms, by their log name: (weight, term)."""
    cfg = st.cfg
    terms: dict[str, tuple[float, torch.Tensor]] = {}
    if st.expr:  # frozen classifiers read the translation as its target
        terms["G_expr"] = (cfg.lambda_expr, torch.stack([losses.expression(
            clf(diff_augment(fake, cfg.expr_augment)), y_t, cfg.expr_confidence)
            for clf in st.expr]).mean())
    if cfg.lambda_change > 0:  # the edit itself, before any export strength
        terms["G_change"] = (cfg.lambda_change, losses.l1(fake, x[src]))
    if mask is not None:
        terms["G_mask"] = (cfg.lambda_mask, losses.paint_regularizer(mask) if flow is not None
                           else losses.attention_regularizer(mask))
    if flow is not None:
        terms["G_flow"] = (cfg.lambda_flow, losses.flow_smoothness(flow))
    if st.teacher is not None:  # the teacher's edit of the same face and target
        with torch.no_grad():
            target = st.teacher(x[src].float(), c_t)
        terms["G_distill"] = (cfg.lambda_distill, losses.l1(fake, target))
    return terms


def uses_d(cfg: Config) -> bool:
    """Whether D trains: only if G's loss reads it (its adversarial or emotion term)."""
    return cfg.lambda_adv > 0 or cfg.lambda_cl > 0


def _d_update(st: TrainState, D: nn.Module, x: torch.Tensor, y: torch.Tensor,
              src: torch.Tensor, fake: torch.Tensor, amp_dtype: torch.dtype | None
              ) -> dict[str, torch.Tensor]:
    """One D step on the real faces and the (detached) translations: its losses, or
    _nonfinite's answer if its loss or gradients are not finite."""
    cfg, device = st.cfg, x.device
    logs: dict[str, torch.Tensor] = {}
    with autocast(device, amp_dtype), torch.set_grad_enabled(True):
        real = x.detach().requires_grad_(cfg.r1_gamma > 0)
        parts = [real, fake.detach()]
        if cfg.adv_loss == "wgan-gp":  # points between each face and its translation
            eps = torch.rand(len(fake), 1, 1, 1, device=device)
            parts.append((eps * x[src] + (1 - eps) * fake.detach()).requires_grad_(True))
        rf, cl = D(diff_augment(torch.cat(parts), cfg.d_augment))
        n, m = len(x), len(fake)
        d_adv = losses.d_adversarial(rf[:n], rf[n:n + m], cfg.adv_loss)
        d_cl = losses.d_classification(cl[:n], y, cl[n:n + m], cfg.cl_loss)
        loss_d = d_adv + cfg.lambda_cl * d_cl
        if cfg.r1_gamma > 0 or cfg.adv_loss == "wgan-gp":
            logs["D_gp"] = d_gp = _d_penalty(cfg, rf, parts, n + m)
            loss_d = loss_d + d_gp
    if not _backward_step(loss_d, st.opt_D, st.scaler_D):
        return _nonfinite(st, "D", loss_d)
    logs.update(loss_D=loss_d, D_adv=d_adv, D_cl=d_cl, D_acc=(cl[:n].argmax(1) == y).float().mean())
    return logs


def _l_cyc(G: nn.Module, cfg: Config, x: torch.Tensor, y: torch.Tensor, src: torch.Tensor,
           fake: torch.Tensor, recon: torch.Tensor | None) -> torch.Tensor:
    """L_cyc, as L1 to the input: the poster's reconstruction G_dec(G_enc(x)|y_x) (recon),
    CycleGAN's cycle G(G(x|y)|y_x), or both (cfg.cycle_mode)."""
    g_cyc = fake.new_zeros((), dtype=torch.float32)
    if recon is not None:
        g_cyc = g_cyc + losses.l1(recon, x)
    if cfg.cycle_mode in ("cycle", "both") and cfg.lambda_cyc > 0:
        g_cyc = g_cyc + losses.l1(G(fake, one_hot(y[src])), x[src])
    return g_cyc


def _d_penalty(cfg: Config, rf: torch.Tensor, parts: list[torch.Tensor], k: int
               ) -> torch.Tensor:
    """R1 on the real faces parts[0] (r1_gamma), plus WGAN-GP's penalty on the interpolates
    parts[2] (their D_rf scores are rf[k:])."""
    real = parts[0]
    d_gp = rf.new_zeros((), dtype=torch.float32)
    if cfg.r1_gamma > 0:
        d_gp = d_gp + cfg.r1_gamma / 2 * losses.gradient_penalty(rf[:len(real)], real, 0.0)
    if cfg.adv_loss == "wgan-gp":
        d_gp = d_gp + cfg.lambda_gp * losses.gradient_penalty(rf[k:], parts[2], 1.0)
    return d_gp


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
    ok = torch.isfinite(loss.detach()).all()
    if scaler is None:
        gs = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if gs:  # max |g| per tensor: NaN or inf iff some element is
            ok = ok & torch.isfinite(torch.stack(torch._foreach_norm(gs, math.inf))).all()
    if not all_ranks_true(ok):
        opt.zero_grad(set_to_none=True)
        return False
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    return True


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


# --------------------------------------------------------------------------- the loop


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
        cfg = Config.from_dict(resumed_settings(saved, overrides, RESUMABLE_FIELDS))
    if not cfg.data:
        raise ConfigError("config field 'data': give --data PATH (fer2013.csv or image folder)")
    with distributed(cfg.device):  # under torchrun: join the group, leave it at the end
        return _train(cfg, resume, progress_bar)


def _train(cfg: Config, resume: bool, progress_bar: bool) -> dict[str, Any]:
    rank, world = dist_info()
    device = rank_device(cfg.device, world)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    amp_dtype = resolve_precision(cfg.precision, device)
    train_data, view_data, n_blank = _load_data(cfg, rank)

    st = make_state(cfg, device)
    if amp_dtype == torch.float16:
        st.scaler_G, st.scaler_D = torch.amp.GradScaler("cuda"), torch.amp.GradScaler("cuda")
    ckpt_path = Path(cfg.out) / CKPT_NAME
    # every rank reads the checkpoint: each needs the Adam states, not only the weights
    resumed = load_checkpoint(st, ckpt_path) if resume else {}
    _wrap_models(st, device, world, ckpt_path)
    batches = Batches(train_data, cfg.batch_size, cfg.seed, cfg.flip, cfg.targets, device,
                      rank, world)
    total = cfg.max_steps or cfg.epochs * batches.steps_per_epoch

    run = RunLog(st, batches, view_data, resumed)
    run.open(resume)
    run.say(f"ccyclegan: {len(train_data)} training faces ({n_blank} blank dropped), "
            f"{batches.steps_per_epoch} steps/epoch, {total} steps, device {device}, "
            f"precision {amp_dtype or 'fp32'}, world {world}")
    if (was := resumed.get("global_batch", batches.global_batch)) != batches.global_batch:
        run.say(f"ccyclegan: warning: resuming with a global batch of {batches.global_batch} "
                f"(checkpoint: {was}, world size {resumed.get('world_size')}); the data order "
                f"and step count no longer match the original run")
    run.start(total, progress_bar)
    interrupted = None
    with StopFlag() as stop, run:
        while st.step < total:
            x, y, src, y_t = batches.get(st.step)
            lr = lr_at(cfg, st.step, total)
            for group in (*st.opt_G.param_groups, *st.opt_D.param_groups):
                group["lr"] = lr
            try:
                logs = train_step(st, x, y, src, y_t, amp_dtype)
            except NonFiniteLossError as e:  # every rank raises at the same step
                raise run.stopped_by(e) from None
            st.step += 1
            run.record(logs)
            writes = []
            # a single process also stops within a step of --max-minutes (under torchrun
            # the ranks agree at log steps, where they exchange metrics anyway)
            if (st.step % cfg.log_every == 0 or st.step == total
                    or (world == 1 and run.budget_spent())):
                writes.append(run.metrics())
            if st.step % cfg.ckpt_every == 0:
                writes.append(run.checkpoint())
            if st.step % cfg.sample_every == 0:
                writes.append(run.sample(f"step_{st.step:07d}.png"))
            stopping = run.commit(writes, stop.signal)  # all ranks: write, then agree
            if stopping:
                interrupted = None if stopping == TIME_UP else stopping
                break
        run.finish(final=interrupted is None)
    return {"step": st.step, "total_steps": total, "interrupted": interrupted,
            "run_dir": str(run.dir), "steps_per_epoch": batches.steps_per_epoch,
            "rank": rank, "world_size": world, "global_batch": batches.global_batch,
            "skipped_steps": run.skipped}


def _load_data(cfg: Config, rank: int) -> tuple[FaceData, FaceData, int]:
    """The training faces, the faces of the sample grids (the test split when there is one)
    and the number of blank training faces dropped."""
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
    return train_data, view_data, n_blank


def _wrap_models(st: TrainState, device: torch.device, world: int, ckpt_path: Path) -> None:
    """Under torchrun, DDP for G and D once every rank is known to be at the same step; then
    torch.compile when asked."""
    cfg = st.cfg
    if world > 1 and (cfg.r1_gamma > 0 or cfg.adv_loss == "wgan-gp"):
        raise ConfigError("gradient penalties (r1_gamma, adv_loss wgan-gp) need a double "
                          "backward, which DistributedDataParallel does not support: train "
                          "them in one process")
    if world > 1:
        minus_lo, hi = maxes_over_ranks([-st.step, st.step], device)
        if -minus_lo != hi:  # every rank sees the same lo, hi: all raise together, none hangs
            raise CheckpointError(f"{ckpt_path}: ranks resumed at different steps ({-minus_lo} "
                                  f"to {hi}); is --out on a filesystem that every node sees?")
        wrap_ddp(st, device)
    if cfg.compile:
        st.G_train = torch.compile(st.G if st.G_train is None else st.G_train)
        st.D_train = torch.compile(st.D if st.D_train is None else st.D_train)
