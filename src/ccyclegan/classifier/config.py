"""The classifier's config: kept free of torch so the CLI can build its flags quickly."""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from ccyclegan.core.config import ConfigError, check_type, drop_input_blur, show_names, to_float


@dataclass
class ClassifierConfig:
    data: str = ""
    out: str = "runs/classifier"
    # model: "vgg" (EmotionNet, the judge) or "resnet" (a second family, for a second judge)
    arch: Literal["vgg", "resnet"] = "vgg"
    width: int = 64
    feature_dim: int = 256
    dropout: float = 0.4
    # optimisation
    epochs: int = 40
    batch_size: int = 128
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.0  # 0 = per optimiser: 0.05 (SGD), 2e-3 (AdamW)
    weight_decay: float = -1.0  # -1 = per optimiser: 5e-4 (SGD), 0.05 (AdamW)
    warmup: float = 0.15
    label_smoothing: float = 0.1
    # "balanced": each class weighs n / (7 n_class) in the loss, so that a rare emotion
    # (disgust: 1.5 % of the Training rows) is learnt as well as a common one; for a loss
    # classifier whose gradient must know every target, not for the judges
    class_weight: Literal["none", "balanced"] = "none"
    # post-hoc logit adjustment (Menon et al., 2021): the saved judge adds -tau log(share of
    # each class in the training rows) to its logits, so a rare emotion is predicted where its
    # evidence is as strong as a common one's (0 = off). Translations ask for every emotion
    # equally often; a judge of them should not fall back on the common ones. May change on
    # --resume: a finished run is then scored again with the new tau, without retraining
    logit_adjust: float = 0.0
    # adversarial training (Madry et al.): train on the worst face within an L2 ball of this
    # radius (pixels in [-1, 1]; 0 = off), found by adv_steps of projected gradient ascent.
    # A robust classifier's input gradient points at visible features, not at noise: a loss
    # classifier for the generator, not a judge
    adv_eps: float = 0.0
    adv_steps: int = 2
    # augmentation
    shift: float = 4.0  # max shift in pixels
    scale: float = 0.1  # max relative zoom in/out
    rotate: float = 10.0  # max degrees
    flip: bool = True
    jitter: float = 0.2  # max relative change of contrast and brightness
    # data
    val_fraction: float = 0.05
    drop_blank: bool = True
    limit: int = 0  # use only this many training faces (0 = all); for smoke tests
    # runtime
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(ClassifierConfig)
        for f in fields(self):
            v = getattr(self, f.name)
            if hints[f.name] is float and isinstance(v, int) and not isinstance(v, bool):
                setattr(self, f.name, to_float(f.name, v))
            check_type(f.name, getattr(self, f.name), hints[f.name])
        for name in ("width", "feature_dim", "epochs", "batch_size", "adv_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"config field '{name}' must be > 0, got {getattr(self, name)}")
        for name in ("lr", "shift", "scale", "rotate", "jitter", "limit", "threads", "adv_eps",
                     "logit_adjust"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config field '{name}' must be >= 0, got {getattr(self, name)}")
        for name in ("dropout", "warmup", "label_smoothing", "val_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"config field '{name}' must be in [0, 1), "
                                  f"got {getattr(self, name)}")
        if self.weight_decay < 0 and self.weight_decay != -1.0:
            raise ConfigError("config field 'weight_decay' must be >= 0 (or -1 for the default)")

    @property
    def base_lr(self) -> float:
        return self.lr or (0.05 if self.optimizer == "sgd" else 2e-3)

    @property
    def base_weight_decay(self) -> float:
        if self.weight_decay >= 0:
            return self.weight_decay
        return 5e-4 if self.optimizer == "sgd" else 0.05

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> ClassifierConfig:
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(d).__name__}")
        d = drop_input_blur(d, source)
        if unknown := sorted(set(d) - known):
            raise ConfigError(f"{source}: unknown classifier config field(s) "
                              f"{show_names(unknown)}")
        try:
            return cls(**d)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
