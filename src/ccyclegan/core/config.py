"""One typed config for model, losses and training.

Defaults are the poster's recipe (Tesei, CS230): Adam 2e-4, betas (0.5, 0.999), batch 64,
lambda_cl = lambda_cyc = 1, reconstruction L1 through the shared encoder. Every field is a
command-line flag of `ccyclegan train` and is recorded in the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ccyclegan.core.augment import parse_policy
from ccyclegan.core.checkpoint import atomic_write_json

AdvLoss = Literal["bce", "lsgan", "hinge", "wgan-gp"]
ClLoss = Literal["softmax", "sigmoid"]
CycleMode = Literal["reconstruction", "cycle", "both"]
LabelMode = Literal["bottleneck", "planes", "norm"]
Output = Literal["direct", "residual", "attention", "warp"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Targets = Literal["random", "all"]
LrDecay = Literal["none", "linear"]


# Named starting points for `ccyclegan train --recipe NAME` (flags given with it override).
_PAPER: dict[str, Any] = dict(
    output="direct", label_mode="bottleneck", adv_loss="bce", cl_loss="softmax",
    cycle_mode="reconstruction", lambda_adv=1.0, lambda_cl=1.0, lambda_cyc=1.0,
    targets="random", d_augment="",
    lr=2e-4, lr_decay="none", beta1=0.5, beta2=0.999, batch_size=64, d_steps_per_g=1,
    ema_decay=0.0, spectral_norm=False, r1_gamma=0.0, lambda_change=0.0, lambda_expr=0.0,
    expr_classifier="", teacher="", lambda_distill=0.0, init_from="")
RECIPES: dict[str, dict[str, Any]] = {
    # the poster: Adam 2e-4, betas (0.5, 0.999), batch 64, lambda_cl = lambda_cyc = 1
    "paper": _PAPER,
    # the author's Keras code: 7 sigmoids (translations get no emotion), every face to each
    # of the other 6 emotions, G updated once per 5 D updates
    "author": {**_PAPER, "cl_loss": "sigmoid", "targets": "all", "d_steps_per_g": 5},
    # StarGAN (Choi et al. 2018): WGAN-GP with 5 critic steps per G step, lambda_cls 1,
    # lambda_rec 10 on the true cycle, the label tiled into G, Adam 1e-4
    "stargan": {**_PAPER, "adv_loss": "wgan-gp", "lambda_gp": 10.0, "d_steps_per_g": 5,
                "cycle_mode": "cycle", "lambda_cyc": 10.0, "label_mode": "planes", "lr": 1e-4},
    # a first model in 15 minutes on a laptop CPU: the bundled model's recipe (conditional
    # norm, attention output, the package's frozen loss classifier) for 13 minutes of training,
    # with batch 32 and a D of half the width, so that a slow CPU makes the ~1,000 steps after
    # which the edits show (README "Train")
    "quick": {**_PAPER, "output": "attention", "label_mode": "norm", "lr": 5e-4,
              "batch_size": 32, "disc_channels": 32,
              "ema_decay": 0.995, "expr_classifier": "bundled", "lambda_expr": 1.0,
              "expr_confidence": 0.75, "max_minutes": 13.0, "log_every": 25,
              "sample_every": 250, "ckpt_every": 100},
}


class ConfigError(ValueError):
    """A config value or file is invalid; the message names the field."""


@dataclass
class Config:
    # data
    data: str = ""
    out: str = "runs/ccyclegan"
    flip: bool = True
    drop_blank: bool = True
    # model
    gen_channels: int = 32
    disc_channels: int = 64
    label_mode: LabelMode = "bottleneck"
    # how G's last layer makes the face: the poster's "direct" tanh, "residual" (x + change,
    # US-GAN's ultimate skip), "attention" (GANimation's mask A x + (1 - A) colour) or "warp"
    # (A W(x, F) + (1 - A) colour: the input moved by a smooth field F, new content where the
    # mask opens; the photo path moves the photo's own pixels by F)
    output: Output = "direct"
    spectral_norm: bool = False
    # losses
    adv_loss: AdvLoss = "bce"
    cl_loss: ClLoss = "softmax"
    cycle_mode: CycleMode = "reconstruction"
    # G's adversarial weight (the poster: 1); with lambda_cl 0 too, D is not trained at all
    lambda_adv: float = 1.0
    lambda_cl: float = 1.0
    lambda_cyc: float = 1.0
    # gradient penalties on D: R1 (gamma/2 E|grad D_rf(x)|^2 on real faces), and WGAN-GP's
    # weight (with adv_loss wgan-gp: (|grad D_rf(x_hat)| - 1)^2 on real/fake interpolates)
    r1_gamma: float = 0.0
    lambda_gp: float = 10.0
    # attention output: GANimation's mask regulariser, lambda_mask * (mean A + TV(A)), which
    # keeps the mask from saturating at "copy the input"
    lambda_mask: float = 0.1
    # warp output: smoothness of the displacement field F (mean squared neighbour difference,
    # pixels); lambda_mask there weights the painted share, mean (1 - A) + TV(A)
    lambda_flow: float = 1.0
    # distillation: a generator file or run (any output, its export settings included) whose
    # translations G learns to reproduce, lambda_distill * |G(x|t) - T(x|t)|_1, on top of the
    # losses above: one plain generator that makes another's (or an ensemble's) edits
    teacher: str = ""
    lambda_distill: float = 0.0
    # start G from this generator's weights (a run, a generator file, or the first member of
    # an ensemble file); parts the source lacks (a warp output's field) keep their init
    init_from: str = ""
    # a sparse edit: lambda_change * mean |G(x|t) - x| on the translations, so that G spends
    # its change where the expression needs it rather than across the face (0 = off)
    lambda_change: float = 0.0
    # frozen emotion classifiers (comma-separated classifier run dirs or files, trained with
    # `ccyclegan train-classifier`, or "bundled": the one shipped for this loss, never a
    # judge) whose cross-entropy on G's translations, with their target,
    # joins G's loss with weight lambda_expr; each sees the translation through expr_augment
    # (DiffAugment ops), so that G cannot satisfy them with a pixel-exact pattern
    expr_classifier: str = ""
    lambda_expr: float = 0.0
    expr_augment: str = "translation"
    # the loss stops for a translation read as its target with this probability (0 = never)
    expr_confidence: float = 0.0
    targets: Targets = "random"
    # DiffAugment policy for everything D sees, e.g. "translation,cutout" ("" = off)
    d_augment: str = ""
    # optimisation
    lr: float = 2e-4
    # "linear": CycleGAN's schedule, lr constant for the first half of the run's steps, then
    # linearly to 0 at its last step (a pure function of the step: nothing more to checkpoint)
    lr_decay: LrDecay = "none"
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 64
    d_steps_per_g: int = 1
    ema_decay: float = 0.0
    epochs: int = 200
    max_steps: int = 0
    # stop after this many minutes of training (summed over resumes; 0 = no limit): equal
    # wall-clock comparisons of settings whose steps cost differently
    max_minutes: float = 0.0
    # runtime
    seed: int = 0
    device: str = "auto"
    precision: Precision = "auto"
    threads: int = 0
    compile: bool = False
    skip_nonfinite: bool = False
    # logging / checkpoints
    log_every: int = 50
    sample_every: int = 1000
    ckpt_every: int = 1000
    n_sample_faces: int = 8

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(Config)
        for f in fields(self):  # JSON writes 1e-3 and 1 alike: accept ints for float fields
            v = getattr(self, f.name)
            if hints[f.name] is float and isinstance(v, int) and not isinstance(v, bool):
                setattr(self, f.name, to_float(f.name, v))
        self.validate()

    def validate(self) -> None:
        hints = typing.get_type_hints(Config)
        for f in fields(self):
            check_type(f.name, getattr(self, f.name), hints[f.name])
        positive = ("gen_channels", "disc_channels", "batch_size", "d_steps_per_g", "epochs",
                    "log_every", "sample_every", "ckpt_every", "lr")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(
                    f"config field '{name}' must be > 0, got {_show(getattr(self, name))}")
        for name in ("max_steps", "max_minutes", "threads", "n_sample_faces", "lambda_adv",
                     "lambda_cl", "lambda_cyc", "r1_gamma", "lambda_gp", "lambda_mask",
                     "lambda_flow", "lambda_change", "lambda_expr", "lambda_distill"):
            if (v := getattr(self, name)) < 0:
                raise ConfigError(f"config field '{name}' must be >= 0, got {_show(v)}")
        for name in ("d_augment", "expr_augment"):
            try:
                parse_policy(getattr(self, name))
            except ValueError as e:
                raise ConfigError(f"config field '{name}': {e}") from None
        if self.lambda_expr > 0 and not self.expr_classifier.strip():
            raise ConfigError("config field 'expr_classifier': lambda_expr > 0 needs a frozen "
                              "classifier (--expr-classifier RUN_DIR)")
        if self.lambda_distill > 0 and not self.teacher.strip():
            raise ConfigError("config field 'teacher': lambda_distill > 0 needs a teacher "
                              "generator (--teacher FILE_OR_RUN)")
        for name in ("beta1", "beta2", "ema_decay", "expr_confidence"):
            if not 0.0 <= (v := getattr(self, name)) < 1.0:
                raise ConfigError(f"config field '{name}' must be in [0, 1), got {_show(v)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> Config:
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(d).__name__}")
        d = drop_input_blur(d, source)
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(d) - known):
            raise ConfigError(f"{source}: unknown config field(s) {show_names(unknown)}")
        try:
            return cls(**d)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Config:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read config JSON: {e}") from None
        return cls.from_dict(d, source=str(path))


def drop_input_blur(d: dict[str, Any], source: str) -> dict[str, Any]:
    """d without its obsolete input_blur field, refused unless it asked for no blur.

    Models and classifiers trained on FER2013 version 1, whose Training rows were blurred,
    saved the Gaussian sigma they blurred every input by, and relied on it. Nothing blurs
    inputs any more, so such a model would see faces unlike any it learnt: it must be
    retrained. 0 (no blur) and -1 (the old default) mean nothing and are dropped."""
    if "input_blur" not in d:
        return d
    blur = d["input_blur"]
    if isinstance(blur, bool) or blur not in (0, -1):
        raise ConfigError(f"{source}: input_blur {_show(blur)}: trained on blurred faces "
                          "(FER2013 version 1); inputs are no longer blurred, so it must be "
                          "retrained on the current data")
    return {k: v for k, v in d.items() if k != "input_blur"}


def show_names(names: list[str], limit: int = 5) -> str:
    """Field names for one-line messages: escaped (a fuzzed file's key can hold a newline),
    cut short, at most `limit` of them."""
    return (", ".join(_show(k, 40).strip("'") for k in names[:limit])
            + (" ..." if len(names) > limit else ""))


def _show(value: Any, limit: int = 60) -> str:
    """repr for messages, cut short (a fuzzed config can hold a 4000-digit number)."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's str-conversion limit
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def to_float(name: str, value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        raise ConfigError(f"config field '{name}' is too large, got {_show(value)}") from None


def check_type(name: str, value: Any, hint: Any) -> None:
    """Reject values JSON or the CLI could smuggle in with the wrong type."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(map(str, typing.get_args(hint)))
            raise ConfigError(
                f"config field '{name}' must be one of {choices}; got {_show(value)}")
        return
    if origin in (typing.Union, types.UnionType):
        return
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise ConfigError(
                f"config field '{name}' must be a finite number, got {_show(value)}")
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ConfigError(
            f"config field '{name}' must be {getattr(hint, '__name__', hint)}, got {_show(value)}"
        )
