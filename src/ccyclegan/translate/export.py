"""Export the generator: `ccyclegan export --checkpoint RUN --format onnx -o model.onnx`, or a
release file of the generator alone (`--format safetensors`, fp16 weights).

The graph is G(x|c): inputs ``face`` float32 [B, 1, 48, 48] in [-1, 1] and ``condition``
float32 [B, 7] (one-hot or a blend, in data.EMOTIONS order); outputs ``translated`` float32
[B, 1, 48, 48] in [-1, 1], and the parts a photo needs to show the edit at its own resolution:
``mask`` [B, 1, 48, 48] (the share of each pixel taken from the moved input: 1 for models that
paint no new content) and ``flow`` [B, 2, 48, 48] (the displacement field, (dx, dy) in pixels;
0 for models without one). The batch dimension is dynamic. The model's config, the emotion order
and the input range are stored in the ONNX metadata (``ccyclegan.config``,
``ccyclegan.emotions``).
Needs the export extra (onnx; onnxruntime runs the result). Why the TorchScript exporter:
docs/notes.md.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ccyclegan.core.checkpoint import NO_BUNDLED_MODEL, atomic_write_bytes, bundled_model_path
from ccyclegan.core.data import EMOTIONS, IMAGE_SIZE, NUM_CLASSES
from ccyclegan.core.generator_files import (
    Strength,
    as_ensemble,
    check_condition_scale,
    check_strength,
    join_generators,
    load_generator,
    plain,
    save_generator,
    strength_json,
)
from ccyclegan.core.models import Ensemble, Generator
from ccyclegan.translate.faces import TranslateError

__all__ = ["OPSET", "export_onnx", "export_safetensors", "onnx_bytes"]

OPSET = 17
OUTPUT_NAMES = ("translated", "mask", "flow")


class _Forward(nn.Module):
    def __init__(self, G: nn.Module):
        super().__init__()
        self.G = G

    def forward(self, face: torch.Tensor, condition: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, mask, flow = self.G.decode_parts(self.G.encode(face), condition)
        if mask is None:
            mask = torch.ones_like(out)
        if flow is None:  # zeros, in two graph nodes (zeros_like + expand took five)
            zero = out[:, :1] * 0
            flow = torch.cat([zero, zero], 1)
        return out, mask, flow


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise TranslateError(f"ONNX export needs the {module} package: "
                             "pip install 'ccyclegan[export]'") from None


def onnx_bytes(G: nn.Module, config: dict | None = None, opset: int = OPSET) -> bytes:
    """The serialized ONNX model of generator G (fp32, on the CPU)."""
    onnx = _need("onnx")
    G = G.float().cpu().eval()
    face = torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE)
    cond = torch.zeros(1, NUM_CLASSES)
    cond[0, 0] = 1.0
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # legacy-exporter deprecation notice; instance_norm "train=True" (it always uses the
        # input's statistics: track_running_stats is off, so this is the eval behaviour)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Forward(G), (face, cond), buf, dynamo=False, opset_version=opset,
            input_names=["face", "condition"], output_names=list(OUTPUT_NAMES),
            dynamic_axes={name: {0: "batch"} for name in ("face", "condition", *OUTPUT_NAMES)},
            do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    meta = {"ccyclegan.emotions": json.dumps(list(EMOTIONS)),
            "ccyclegan.input_range": "[-1, 1]",
            "ccyclegan.config": json.dumps(config or {}),
            "ccyclegan.strength": json.dumps(strength_json(getattr(G, "strength", 1.0))),
            "ccyclegan.flip_average": json.dumps(getattr(G, "flip_average", False)),
            "ccyclegan.condition_scale": json.dumps(
                strength_json(getattr(G, "condition_scale", 1.0))),
            "ccyclegan.members": json.dumps(len(getattr(G, "members", (G,))))}
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = "CCycleGAN generator G(face | condition)"
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _load_source(checkpoint: str | os.PathLike[str] | None, strength: Strength | None,
                 flip_average: bool | None, condition_scale: Strength | None,
                 ensemble_with: Sequence[str | os.PathLike[str]] = ()
                 ) -> tuple[Generator | Ensemble, dict, dict]:
    """The generator to export (None: the bundled model) with the export's overrides of its
    strength, mirror averaging and condition scale (None keeps the source's own), and the
    generators of ensemble_with averaged with it. One place, so every format ships the same
    edit."""
    if checkpoint is None:
        checkpoint = bundled_model_path()
        if checkpoint is None:
            raise TranslateError(NO_BUNDLED_MODEL)
    G, cfg, progress = load_generator(Path(checkpoint), "cpu")
    E = as_ensemble(G)
    if ensemble_with:
        others = [(*load_generator(Path(p), "cpu")[:2], Path(p)) for p in ensemble_with]
        E = join_generators(E, others, cfg)
    if strength is not None:
        E.strength = check_strength(strength, "strength")
    if flip_average is not None:
        E.flip_average = flip_average
    if condition_scale is not None:
        E.condition_scale = check_condition_scale(condition_scale, "condition scale")
    return plain(E), cfg, progress


def export_safetensors(checkpoint: str | os.PathLike[str] | None, out: str | os.PathLike[str],
                       strength: Strength | None = None, flip_average: bool | None = None,
                       condition_scale: Strength | None = None, half: bool = True,
                       ensemble_with: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Load a run dir / generator.safetensors / training checkpoint (None: the bundled model)
    and write its generator alone (fp16 weights if half), config and progress kept."""
    G, cfg, progress = _load_source(checkpoint, strength, flip_average, condition_scale,
                                    ensemble_with)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TranslateError(f"{out}: cannot write ({e.strerror or e})") from None
    save_generator(out, G, cfg, progress, half=half)
    return out


def export_onnx(checkpoint: str | os.PathLike[str] | None, out: str | os.PathLike[str],
                opset: int = OPSET, strength: Strength | None = None,
                flip_average: bool | None = None, condition_scale: Strength | None = None,
                ensemble_with: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Load a run dir / generator.safetensors / training checkpoint (None: the bundled model)
    and write its generator as ONNX to out (atomically)."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise TranslateError(f"{out}: the ONNX output should end in .onnx")
    G, cfg, _ = _load_source(checkpoint, strength, flip_average, condition_scale,
                             ensemble_with)
    data = onnx_bytes(G, cfg.to_dict(), opset)
    try:
        atomic_write_bytes(out, data)
    except OSError as e:
        raise TranslateError(f"{out}: cannot write ({e.strerror or e})") from None
    return out
