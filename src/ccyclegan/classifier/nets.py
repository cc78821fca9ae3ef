"""Our own FER2013 emotion classifier: the judge of expressions in `ccyclegan evaluate`.

A compact VGG-style CNN (conv blocks of 64-128-256-512 channels with BatchNorm, a 256-d
penultimate layer used for FED, dropout), or a pre-activation ResNet for a second judge; the
inference the evaluation uses (class probabilities with mirror averaging, penultimate
features, accuracy reports); and the classifier's files (load, export). Its training is in
`classifier.train`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ccyclegan.classifier.config import ClassifierConfig
from ccyclegan.core.checkpoint import (
    CheckpointError,
    build_checked,
    load_module,
    load_tensors,
    save_tensors,
    unprefixed,
)
from ccyclegan.core.config import ConfigError
from ccyclegan.core.data import EMOTIONS, NUM_CLASSES, FaceData
from ccyclegan.core.runtime import autocast

MODEL_NAME = "classifier.safetensors"


# --------------------------------------------------------------------------- the model


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class _Classifier(nn.Module):
    """body -> embed (the penultimate features, FED's) -> head (7 logits)."""

    body: nn.Module
    embed: nn.Module
    head: nn.Sequential

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class EmotionNet(_Classifier):
    """VGG-style: 48 -> 24 -> 12 -> 6 -> 3 through four blocks of width w, 2w, 4w, 8w (one conv
    in the first block, two in the others: the 48x48 stage is the costliest on a CPU), then
    flatten -> dense `feature_dim` (the penultimate features) -> 7 logits.

    Input: float [B, 1, 48, 48] in [-1, 1] (`data.normalize`)."""

    def __init__(self, width: int = 64, feature_dim: int = 256, dropout: float = 0.4,
                 num_classes: int = NUM_CLASSES):
        super().__init__()
        w = width
        layers: list[nn.Module] = [*_conv(1, w), nn.MaxPool2d(2)]
        for cin, cout in ((w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w)):
            layers += [*_conv(cin, cout), *_conv(cout, cout), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers)
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * w * 9, feature_dim, bias=False),
            nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))


class _Block(nn.Module):
    """Pre-activation residual block (He et al. 2016), a 1x1 projection when the shape
    changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        # The projection's stride is a slice, then a 1x1 conv: the same function and weights as
        # a strided 1x1 conv, whose channels-last backward crashes oneDNN on some CPUs for
        # narrow layers (width <= 12 at 48x48, seen on a Zen 4 EPYC with torch 2.13).
        self.stride = stride
        self.proj = (nn.Conv2d(cin, cout, 1, bias=False)
                     if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x))
        s = self.stride
        skip = x if self.proj is None else self.proj(h[:, :, ::s, ::s])
        h = self.conv1(h)
        return skip + self.conv2(F.relu(self.bn2(h)))


class ResNetEmotion(_Classifier):
    """A second architecture family for a second judge: a pre-activation ResNet (two blocks
    per stage at 24, 12, 6 and 3 pixels, widths w, 2w, 4w, 8w), global average pooling,
    dense `feature_dim`, 7 logits. Same interface as EmotionNet (features, head)."""

    def __init__(self, width: int = 32, feature_dim: int = 256, dropout: float = 0.4,
                 num_classes: int = NUM_CLASSES):
        super().__init__()
        w = width
        layers: list[nn.Module] = [nn.Conv2d(1, w, 3, 1, 1, bias=False)]
        cin = w
        for cout in (w, 2 * w, 4 * w, 8 * w):
            layers += [_Block(cin, cout, 2), _Block(cout, cout, 1)]
            cin = cout
        layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1)]
        self.body = nn.Sequential(*layers)
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, feature_dim, bias=False),
            nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))


def build_classifier(cfg: ClassifierConfig) -> EmotionNet | ResNetEmotion:
    net = ResNetEmotion if cfg.arch == "resnet" else EmotionNet
    return net(cfg.width, cfg.feature_dim, cfg.dropout)


# --------------------------------------------------------------------------- inference


def _to_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [B,1,48,48] (0..255) or float in [-1, 1] -> float [-1, 1] on device."""
    if images.dtype == torch.uint8:
        x = images.to(device).float() / 127.5 - 1.0
    else:
        x = images.to(device).float()
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"expected faces [B, 1, H, W], got {list(x.shape)}")
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def classify(model: EmotionNet, images: torch.Tensor, batch_size: int = 256, tta: bool = True,
             amp_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(class probabilities [N, 7], penultimate features [N, feature_dim]), both float32 on
    the CPU. With tta, probabilities are averaged over the face and its mirror image;
    features are always those of the face as given."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    probs, feats = [], []
    try:
        for chunk in images.split(batch_size):
            x = _to_input(chunk, device)
            with autocast(device, amp_dtype):
                f = model.features(x)
                p = model.head(f).float().softmax(1)
                if tta:
                    p = 0.5 * (p + model(x.flip(-1)).float().softmax(1))
            probs.append(p.float().cpu())
            feats.append(f.float().cpu())
    finally:
        model.train(was_training)
    if not probs:
        return torch.zeros(0, NUM_CLASSES), torch.zeros(0, model.head[-1].in_features)
    return torch.cat(probs), torch.cat(feats)


def predict(model: EmotionNet, images: torch.Tensor, batch_size: int = 256,
            tta: bool = True) -> torch.Tensor:
    """Class probabilities [N, 7] (mirror-averaged with tta)."""
    return classify(model, images, batch_size, tta)[0]


def features(model: EmotionNet, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Penultimate-layer features [N, feature_dim] (for the Frechet Emotion Distance)."""
    return classify(model, images, batch_size, tta=False)[1]


def confusion_matrix(true: torch.Tensor | np.ndarray, pred: torch.Tensor | np.ndarray,
                     num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Counts [true, predicted]."""
    t = np.asarray(true, dtype=np.int64)
    p = np.asarray(pred, dtype=np.int64)
    return np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(
        num_classes, num_classes)


def accuracy_report(model: EmotionNet, data: FaceData, tta: bool = True,
                    amp_dtype: torch.dtype | None = None) -> dict[str, Any]:
    probs, _ = classify(model, data.images, tta=tta, amp_dtype=amp_dtype)
    pred = probs.argmax(1)
    cm = confusion_matrix(data.labels, pred)
    per_class = {EMOTIONS[k]: (float(cm[k, k] / cm[k].sum()) if cm[k].sum() else None)
                 for k in range(NUM_CLASSES)}
    return {"n": len(data), "accuracy": float((pred == data.labels).float().mean())
            if len(data) else None, "per_class": per_class, "confusion": cm.tolist()}


# --------------------------------------------------------------------------- files


def load_classifier(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[EmotionNet, dict[str, Any]]:
    """Load the judge from a run directory (classifier.safetensors) or a weights file.
    Returns (model in eval mode, metadata with 'config')."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_NAME
    tensors, meta = load_tensors(path)
    kind = meta.get("kind")
    if kind not in ("classifier", "classifier_state"):
        raise CheckpointError(f"{path}: not a ccyclegan classifier (kind={str(kind)[:40]!r})")
    cfg = _config_from_meta(meta, path)
    if kind == "classifier_state":
        tensors = unprefixed("model", tensors)
    model = build_checked(lambda: build_classifier(cfg), tensors, "classifier", path)
    load_module(model, tensors, "classifier", path)
    if "logit_bias" in meta:  # post-hoc logit adjustment (train-classifier --logit-adjust)
        bias = meta["logit_bias"]
        if (not isinstance(bias, list) or len(bias) != NUM_CLASSES
                or not all(isinstance(b, (int, float)) and math.isfinite(b) for b in bias)):
            raise CheckpointError(f"{path}: metadata 'logit_bias' must be {NUM_CLASSES} "
                                  f"finite numbers")
        with torch.no_grad():
            model.head[-1].bias += torch.tensor(bias, dtype=model.head[-1].bias.dtype)
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    return model, meta


def _save_model(path: Path, model: EmotionNet, cfg: ClassifierConfig, info: dict[str, Any]) -> None:
    save_tensors(path, model.state_dict(), {"kind": "classifier", "config": cfg.to_dict(),
                                            "emotions": list(EMOTIONS), **info})


def export_classifier(src: str | Path, out: str | Path, half: bool = True) -> Path:
    """A classifier run's weights as a release file (fp16 if half, as the package ships its
    judges), with its config and scores; loads like the run itself (load_classifier)."""
    model, meta = load_classifier(src)
    sd = {k: (v.half() if half and v.is_floating_point() else v)
          for k, v in model.state_dict().items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if "logit_bias" in meta:  # now part of the head's bias: kept as a record, not reapplied
        meta = {**{k: v for k, v in meta.items() if k != "logit_bias"},
                "logit_bias_applied": meta["logit_bias"]}
    save_tensors(out, sd, {**meta, "kind": "classifier"})
    return out


def _config_from_meta(meta: dict[str, Any], path: Path) -> ClassifierConfig:
    """The config in a file's metadata, validated field by field (CheckpointError naming the
    bad field)."""
    if "config" not in meta:
        raise CheckpointError(f"{path}: classifier metadata has no config")
    try:
        return ClassifierConfig.from_dict(meta["config"], source=f"{path} (config)")
    except ConfigError as e:
        raise CheckpointError(f"{path}: bad classifier config: {e}") from None
