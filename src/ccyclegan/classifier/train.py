"""Training our own FER2013 emotion classifier (the networks are in `classifier.nets`).

Trained on the Training split only with shift / scale / rotation / flip / contrast
augmentation, label smoothing, and SGD-Nesterov (or AdamW) under a one-cycle schedule (linear
warm-up, cosine decay). The epoch kept as the judge is the best on a validation slice of the
Training split (never on the test split), which is only scored at the end. It never sees
translated faces.

Run directory (`--out`):

| file | what |
|---|---|
| `classifier.safetensors` | the judge (best validation epoch) |
| `classifier.json` | config, validation and test accuracies, confusion matrix |
| `last.safetensors` | the last epoch's weights |
| `state.safetensors` | full training state (weights, optimiser, RNG, epoch) for `--resume` |
| `metrics.csv` | per epoch: loss, train/val accuracy, lr, seconds, images/s |
| `confusion.png` | the judge's confusion matrix on the test split |
"""

from __future__ import annotations

import json
import math
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ccyclegan.classifier.config import ClassifierConfig
from ccyclegan.classifier.nets import (
    MODEL_NAME,
    EmotionNet,
    _config_from_meta,
    _save_model,
    accuracy_report,
    build_classifier,
    load_classifier,
)
from ccyclegan.core.checkpoint import (
    CheckpointError,
    atomic_write_json,
    check_on_meta,
    load_module,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    prefixed,
    save_tensors,
    unprefixed,
)
from ccyclegan.core.config import ConfigError
from ccyclegan.core.data import (
    EMOTIONS,
    NUM_CLASSES,
    DataError,
    FaceData,
    blur_warning,
    drop_blank,
    load_split,
    rng_for,
)
from ccyclegan.core.plots import confusion_image
from ccyclegan.core.run import MetricsLog, StopFlag, resumed_settings, say
from ccyclegan.core.runtime import autocast, resolve_device, resolve_precision

INFO_NAME = "classifier.json"
LAST_NAME = "last.safetensors"
STATE_NAME = "state.safetensors"
# May change on --resume; everything else defines the run.
RESUMABLE_FIELDS = {"data", "out", "device", "precision", "threads", "logit_adjust"}


# --------------------------------------------------------------------------- pieces


def split_validation(data: FaceData, fraction: float, seed: int) -> tuple[FaceData, FaceData]:
    """Stratified (train, val) split of the Training split, a pure function of the seed."""
    if fraction <= 0:
        return data, data.subset(torch.zeros(0, dtype=torch.long))
    g = rng_for(seed, 3, 0)
    val = []
    for k in range(NUM_CLASSES):
        idx = torch.nonzero(data.labels == k).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        val.append(idx[:int(round(len(idx) * fraction))])
    val_idx = torch.cat(val).sort().values
    mask = torch.ones(len(data), dtype=torch.bool)
    mask[val_idx] = False
    return data.subset(mask), data.subset(val_idx)


def class_counts(labels: torch.Tensor) -> torch.Tensor:
    """Rows per emotion (NUM_CLASSES long, int64)."""
    return torch.bincount(labels.long().flatten(), minlength=NUM_CLASSES)


def class_weights(labels: torch.Tensor, mode: str) -> torch.Tensor | None:
    """None, or sklearn's "balanced" weights n / (K n_k) (a class absent from the data gets 0:
    it has no rows to weigh)."""
    if mode == "none":
        return None
    counts = class_counts(labels).float()
    return torch.where(counts > 0, counts.sum() / (NUM_CLASSES * counts.clamp_min(1)), 0.0)


def l2_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
              device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
              targeted: bool = False) -> torch.Tensor:
    """The faces within L2 distance eps of x (and inside [-1, 1]) that raise the loss most,
    by projected gradient ascent with step 2.5 eps / steps (Madry et al., 2018); targeted,
    those that lower it (the faces the model reads most as y)."""
    delta = torch.zeros_like(x)
    step = (-2.5 if targeted else 2.5) * eps / steps
    for _ in range(steps):
        delta.requires_grad_(True)
        with autocast(device, amp_dtype):
            loss = F.cross_entropy(model(x + delta).float(), y)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = delta + step * grad / norm
            norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = delta * (eps / norm).clamp(max=1.0)
            delta = (x + delta).clamp(-1.0, 1.0) - x
    return (x + delta).detach()


def augment(x: torch.Tensor, cfg: ClassifierConfig, g: torch.Generator) -> torch.Tensor:
    """Random shift, zoom, rotation, mirror (one affine resampling, border padding) and
    contrast/brightness jitter of a batch in [-1, 1]."""
    b = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=g, dtype=torch.float64)

    angle = u(-cfg.rotate, cfg.rotate) * math.pi / 180
    zoom = u(1 - cfg.scale, 1 + cfg.scale)
    mirror = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0).double() \
        if cfg.flip else torch.ones(b, dtype=torch.float64)
    half = x.shape[-1] / 2
    tx, ty = u(-cfg.shift, cfg.shift) / half, u(-cfg.shift, cfg.shift) / half
    contrast, bright = u(1 - cfg.jitter, 1 + cfg.jitter), u(-cfg.jitter, cfg.jitter)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # output pixel p samples the input at A p + t: mirror x, rotate, then zoom
    theta = torch.stack([torch.stack([cos * mirror, -sin, tx], 1),
                         torch.stack([sin * mirror, cos, ty], 1)], 1).to(x.dtype).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    c = contrast.to(x.dtype).to(x.device)[:, None, None, None]
    br = bright.to(x.dtype).to(x.device)[:, None, None, None]
    return (out * c + br).clamp(-1.0, 1.0)


def lr_at(step: int, total: int, cfg: ClassifierConfig) -> float:
    """One-cycle: linear warm-up from lr/25 over `warmup` of the steps, then cosine to ~0."""
    peak = cfg.base_lr
    warm = int(cfg.warmup * total)
    if step < warm:
        return peak / 25 + (peak - peak / 25) * step / warm
    t = (step - warm) / max(1, total - warm)
    return peak * (1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _make_optimizer(model: nn.Module, cfg: ClassifierConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.base_weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.base_lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.base_lr)


# --------------------------------------------------------------------------- state files


def _save_state(run: Path, model: EmotionNet, opt: torch.optim.Optimizer, cfg: ClassifierConfig,
                progress: dict[str, Any]) -> None:
    tensors = prefixed("model", model.state_dict())
    t_opt, groups = optimizer_to_tensors(opt, "opt")
    tensors.update(t_opt)
    tensors["rng.cpu"] = torch.get_rng_state()
    save_tensors(run / STATE_NAME, tensors, {"kind": "classifier_state", "config": cfg.to_dict(),
                                             "progress": progress, "param_groups": groups})


def _read_state_config(path: Path) -> ClassifierConfig:
    """The config of a classifier training state, once its model tensors are known to fit
    the model it describes (checked on the meta device: nothing is allocated)."""
    tensors, meta = load_tensors(path)
    if meta.get("kind") != "classifier_state":
        raise CheckpointError(f"{path}: not a classifier training state")
    cfg = _config_from_meta(meta, path)
    check_on_meta(lambda: build_classifier(cfg), unprefixed("model", tensors), "classifier",
                  path)
    return cfg


def _load_state(run: Path, model: EmotionNet, opt: torch.optim.Optimizer) -> dict[str, Any]:
    path = run / STATE_NAME
    tensors, meta = load_tensors(path)
    if meta.get("kind") != "classifier_state":
        raise CheckpointError(f"{path}: not a classifier training state")
    load_module(model, unprefixed("model", tensors), "classifier", path)
    progress = meta.get("progress")
    try:
        if not isinstance(progress, dict):
            raise ValueError("no progress record")
        for key, kind in (("epoch", int), ("best_epoch", int), ("best_val_acc", int | float)):
            if isinstance(progress[key], bool) or not isinstance(progress[key], kind):
                raise ValueError(f"progress {key} is {str(progress[key])[:40]}")
        optimizer_from_tensors(opt, "opt", tensors, meta["param_groups"])
        torch.set_rng_state(tensors["rng.cpu"])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: training state (progress, optimiser or RNG) is "
                              f"missing or does not fit: {why}") from None
    return progress



# --------------------------------------------------------------------------- the training run


@dataclass
class _Session:
    """What the stages of one training run share."""

    run: Path
    cfg: ClassifierConfig
    device: torch.device
    amp_dtype: torch.dtype | None
    train_set: FaceData
    val_set: FaceData
    test_set: FaceData | None
    data_info: dict
    bs: int
    steps_per_epoch: int
    model: EmotionNet
    opt: torch.optim.Optimizer
    progress: dict[str, Any]
    metrics: MetricsLog
    log: typing.Callable[[str], None]
    images: torch.Tensor  # the training faces and labels, on the device
    labels: torch.Tensor
    weight: torch.Tensor | None  # of the classes in the loss

    @property
    def total(self) -> int:
        return self.cfg.epochs * self.steps_per_epoch


def train_classifier(cfg: ClassifierConfig, resume: bool = False,
                     overrides: dict[str, Any] | None = None,
                     log: typing.Callable[[str], None] = say) -> dict[str, Any]:
    """Train (or resume) the classifier in cfg.out; returns the summary written to
    classifier.json."""
    s = _set_up(cfg, resume, overrides, log)
    with StopFlag() as stop, s.metrics:
        for epoch in range(s.progress["epoch"], s.cfg.epochs):
            done = _train_epoch(s, epoch, stop)
            if done is None:  # a signal: the state of the last finished epoch is kept
                raise KeyboardInterrupt(stop.signal)
            _validate_and_select(s, epoch, *done)
        # scored under the flag too: a signal now lets the last few seconds finish
        return finish(s.run, s.cfg, s.test_set, s.data_info, s.amp_dtype, log, s.device)


def _resumed_config(run: Path, cfg: ClassifierConfig, resume: bool,
                    overrides: dict[str, Any] | None) -> ClassifierConfig:
    """cfg, or on resume the state's config with the overrides that may change applied."""
    if resume:
        if not (run / STATE_NAME).is_file():
            raise CheckpointError(f"{run / STATE_NAME}: nothing to resume")
        saved = _read_state_config(run / STATE_NAME).to_dict()
        cfg = ClassifierConfig.from_dict(
            resumed_settings(saved, overrides, RESUMABLE_FIELDS, "state"),
            source=str(run / STATE_NAME))
    if not cfg.data:
        raise ConfigError("config field 'data': give --data PATH (fer2013.csv or image folder)")
    return cfg


def _load_data(cfg: ClassifierConfig) -> tuple[FaceData, FaceData, FaceData | None, dict]:
    full = load_split(cfg.data, "train")
    n_blank = 0
    if cfg.drop_blank:
        full, n_blank = drop_blank(full)
    if cfg.limit:
        full = full.subset(slice(0, cfg.limit))
    train_set, val_set = split_validation(full, cfg.val_fraction, cfg.seed)
    try:
        test_set = load_split(cfg.data, "test")
    except DataError:
        test_set = None
    info = {"n_train": len(train_set), "n_val": len(val_set),
            "n_test": len(test_set) if test_set is not None else 0, "n_blank_dropped": n_blank,
            "train_class_counts": class_counts(train_set.labels).tolist()}
    return train_set, val_set, test_set, info


def _set_up(cfg: ClassifierConfig, resume: bool, overrides: dict[str, Any] | None,
            log: typing.Callable[[str], None]) -> _Session:
    """Config, data, model and optimiser (from the state on resume), the run directory."""
    run = Path(cfg.out)
    cfg = _resumed_config(run, cfg, resume, overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    amp_dtype = resolve_precision(cfg.precision, device)

    train_set, val_set, test_set, data_info = _load_data(cfg)
    bs = min(cfg.batch_size, len(train_set))
    if bs < 2:
        raise ConfigError(f"config field 'batch_size': need at least 2 training faces, "
                          f"got {len(train_set)}")
    steps_per_epoch = len(train_set) // bs

    torch.manual_seed(cfg.seed)
    model = build_classifier(cfg).to(device).to(memory_format=torch.channels_last)
    opt = _make_optimizer(model, cfg)
    progress = {"epoch": 0, "best_val_acc": -1.0, "best_epoch": 0}
    if resume:
        progress = _load_state(run, model, opt)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run / "config.json", cfg.to_dict())
    metrics = MetricsLog(run, progress["epoch"] if resume else None, key="epoch")

    log(f"train-classifier: {data_info['n_train']} train / {data_info['n_val']} val / "
        f"{data_info['n_test']} test faces ({data_info['n_blank_dropped']} blank dropped), "
        f"{steps_per_epoch} steps/epoch x {cfg.epochs} epochs, device {device}, "
        f"precision {amp_dtype or 'fp32'}, threads {torch.get_num_threads()}")
    if test_set is not None and (warning := blur_warning(train_set, test_set)):
        log(f"train-classifier: {warning}")
    images, labels = train_set.images.to(device), train_set.labels.to(device)
    weight = class_weights(train_set.labels, cfg.class_weight)
    weight = None if weight is None else weight.to(device)
    return _Session(run, cfg, device, amp_dtype, train_set, val_set, test_set, data_info, bs,
                    steps_per_epoch, model, opt, progress, metrics, log, images, labels,
                    weight)


def _train_epoch(s: _Session, epoch: int, stop: StopFlag
                 ) -> tuple[float, float, int, float] | None:
    """One pass over the training faces: (mean loss, train accuracy, faces seen, seconds);
    None if a signal asked to stop (checked every step)."""
    cfg, device, amp_dtype, model, opt, bs = s.cfg, s.device, s.amp_dtype, s.model, s.opt, s.bs
    images, labels, total = s.images, s.labels, s.total
    model.train()
    t0 = time.perf_counter()
    perm = torch.randperm(len(s.train_set), generator=rng_for(cfg.seed, 1, epoch)).to(device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    for i in range(s.steps_per_epoch):
        if stop.signal is not None:
            return None
        step = epoch * s.steps_per_epoch + i
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, cfg)
        idx = perm[i * bs:(i + 1) * bs]
        x = augment(images[idx].float() / 127.5 - 1.0, cfg, rng_for(cfg.seed, 2, step))
        x = x.contiguous(memory_format=torch.channels_last)
        y = labels[idx]
        if cfg.adv_eps > 0:
            x = l2_attack(model, x, y, cfg.adv_eps, cfg.adv_steps, device, amp_dtype)
        with autocast(device, amp_dtype):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, weight=s.weight,
                                   label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
    dt = time.perf_counter() - t0
    loss_v = float(loss_sum) / seen
    if not math.isfinite(loss_v):
        raise FloatingPointError(f"non-finite loss in epoch {epoch + 1}; "
                                 f"the last good state in {s.run} is kept")
    return loss_v, float(correct) / seen, seen, dt


def _validate_and_select(s: _Session, epoch: int, loss_v: float, train_acc: float, seen: int,
                         dt: float) -> None:
    """Score the epoch on the validation slice, log it, keep it as the judge if best so far,
    and save the last weights and the training state."""
    cfg, model, run, progress = s.cfg, s.model, s.run, s.progress
    val_acc = (accuracy_report(model, s.val_set, amp_dtype=s.amp_dtype)["accuracy"]
               if len(s.val_set) else None)
    row = {"epoch": epoch + 1, "loss": round(loss_v, 5),
           "train_acc": round(train_acc, 5),
           "val_acc": None if val_acc is None else round(val_acc, 5),
           "lr": float(f"{s.opt.param_groups[0]['lr']:.3g}"), "seconds": round(dt, 1),
           "img_per_s": round(seen / dt, 1)}
    s.metrics.write(row)
    s.log(f"epoch {epoch + 1}/{cfg.epochs}: loss {loss_v:.4f} train acc {row['train_acc']:.4f}"
          f" val acc {val_acc if val_acc is None else round(val_acc, 4)} "
          f"({dt:.0f} s, {row['img_per_s']} img/s)")
    score = val_acc if val_acc is not None else float(epoch)  # no val: keep the last
    progress["epoch"] = epoch + 1
    info = {"epoch": epoch + 1, "val_acc": val_acc}
    if score >= progress["best_val_acc"]:
        progress["best_val_acc"], progress["best_epoch"] = score, epoch + 1
        _save_model(run / MODEL_NAME, model, cfg, info)
    _save_model(run / LAST_NAME, model, cfg, info)
    _save_state(run, model, s.opt, cfg, progress)


def logit_bias(class_counts: list[int], tau: float) -> list[float] | None:
    """-tau log(share of each class) (Menon et al.'s post-hoc logit adjustment), or None for
    tau 0. A class without training rows is counted once, so its bias stays finite."""
    if not tau:
        return None
    counts = torch.tensor(class_counts, dtype=torch.float64).clamp_min(1)
    return [round(float(b), 6) for b in -tau * torch.log(counts / counts.sum())]


def set_logit_bias(path: Path, bias: list[float] | None) -> None:
    """Record the bias in a saved classifier's metadata (load_classifier adds it to the
    logits); the weights stay as trained, so a rescore with another tau starts from them."""
    tensors, meta = load_tensors(path)
    if meta.get("logit_bias") == bias:
        return
    meta = {k: v for k, v in meta.items() if k != "logit_bias"}
    if bias is not None:
        meta["logit_bias"] = bias
    save_tensors(path, tensors, meta)


def finish(run: Path, cfg: ClassifierConfig, test_set: FaceData | None, data_info: dict,
           amp_dtype: torch.dtype | None, log: typing.Callable[[str], None] = say,
           device: torch.device | str = "cpu") -> dict[str, Any]:
    """Score the judge (and the last epoch) on the test split; write classifier.json and
    confusion.png."""
    bias = logit_bias(data_info["train_class_counts"], cfg.logit_adjust)
    for name in (MODEL_NAME, LAST_NAME):
        set_logit_bias(run / name, bias)
    best, meta_best = load_classifier(run / MODEL_NAME, device)
    last, meta_last = load_classifier(run / LAST_NAME, device)
    summary: dict[str, Any] = {
        "config": cfg.to_dict(), "data": data_info, "emotions": list(EMOTIONS),
        "selected_epoch": meta_best.get("epoch"), "val_acc": meta_best.get("val_acc"),
        "last_epoch": meta_last.get("epoch"), "last_val_acc": meta_last.get("val_acc"),
        "test_split": "test (FER2013 PublicTest)", "tta": "mean of the face and its mirror",
        "logit_bias": bias,
    }
    if test_set is not None and len(test_set):
        rep = accuracy_report(best, test_set, amp_dtype=amp_dtype)
        summary["test"] = rep
        summary["test_last_epoch"] = {"accuracy": accuracy_report(
            last, test_set, amp_dtype=amp_dtype)["accuracy"]}
        summary["test_no_tta"] = {"accuracy": accuracy_report(
            best, test_set, tta=False, amp_dtype=amp_dtype)["accuracy"]}
        confusion_image(rep["confusion"], EMOTIONS, EMOTIONS,
                        title=f"classifier on the test split: accuracy "
                              f"{100 * rep['accuracy']:.1f}% (n={rep['n']})").save(
            run / "confusion.png")
        log(f"test accuracy {rep['accuracy']:.4f} (selected epoch {summary['selected_epoch']}); "
            f"last epoch {summary['test_last_epoch']['accuracy']:.4f}; "
            f"without mirror averaging {summary['test_no_tta']['accuracy']:.4f}")
        log("confusion (rows true, columns predicted): " + json.dumps(rep["confusion"]))
    atomic_write_json(run / INFO_NAME, summary)
    return summary
