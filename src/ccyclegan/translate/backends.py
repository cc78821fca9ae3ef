"""The generator behind ExpressionTranslator: PyTorch (eager, or torch.compile'd with frozen
weights) or onnxruntime.

Both answer encode(faces) and decode(encoding, conditions, rows) -> (face, mask or None, field
or None): PyTorch encodes a face once and decodes it under every target; onnxruntime runs the
whole G(x|c) graph per row.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from ccyclegan.core.checkpoint import CheckpointError
from ccyclegan.core.config import ConfigError, drop_input_blur
from ccyclegan.core.data import NUM_CLASSES
from ccyclegan.core.generator_files import load_generator
from ccyclegan.core.runtime import error_reason, resolve_device
from ccyclegan.translate.export import onnx_bytes
from ccyclegan.translate.faces import FACE_SIZE, TranslateError

# G(x|c) in the parts the photo path uses: the face [B, 1, 48, 48] in [-1, 1], the mask A
# [B, 1, 48, 48] (share of each pixel taken from the moved input) or None, the displacement
# field [B, 2, 48, 48] in pixels or None
Parts = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]


def open_backend(path: Path, device: str | None, backend: str | None, threads: int | None,
                 compile: bool):
    """(backend, the model's config or None) for the model file path; ExpressionTranslator.load
    documents the arguments."""
    if backend is None:
        backend = "onnxruntime" if path.suffix.lower() == ".onnx" else "torch"
    if backend == "onnxruntime":
        if compile:
            raise TranslateError("compile applies to the torch backend only")
        model = cfg = None
        if path.suffix.lower() != ".onnx":  # a PyTorch checkpoint: export it in memory
            G, cfg, _ = load_generator(path, "cpu")
            model = onnx_bytes(G, cfg.to_dict())
        session = onnx_session(path, threads, device, model)
        if cfg is None:
            check_onnx_config(session, path)
        return OnnxBackend(session), cfg
    if backend != "torch":
        raise TranslateError(f"unknown backend {backend!r} (torch or onnxruntime)")
    if path.suffix.lower() == ".onnx":
        raise TranslateError(f"{path}: an ONNX model runs with the onnxruntime backend")
    if threads:
        torch.set_num_threads(int(threads))
    try:
        dev = resolve_device(device or "cpu")
        G, cfg, _ = load_generator(path, dev)
    except (RuntimeError, AssertionError) as e:  # e.g. cuda on a build without CUDA
        raise TranslateError(f"cannot use device {device!r}: {e}") from None
    G.requires_grad_(False)
    return TorchBackend(G, dev, compile), cfg


class TorchBackend:
    """G on a torch device; the encoding is shared between the decodes of one face."""

    name = "torch"

    def __init__(self, G, device, compile: bool = False):
        self.G = G
        self.device = device
        self.compiled = False
        self._encode, self._decode = G.encode, G.decode_parts
        if compile:
            self._compile()

    def _no_grad(self):
        # inductor's freezing (weights as constants, prepacked for oneDNN) needs no_grad;
        # eager mode is a little faster under inference_mode
        return torch.no_grad() if self.compiled else torch.inference_mode()

    def _compile(self) -> None:
        """torch.compile the encoder and the decoder with inductor's weight freezing, now, for
        batch 1 and then a dynamic batch size. Needs a C++ compiler on the CPU; when compiling
        fails, say so and stay eager. (What it gains: docs/benchmarks.md.)"""
        import torch._inductor.config as inductor  # heavy, and only for compile=True

        def frozen(fn):
            def call(*args):
                with inductor.patch(freezing=True):
                    return fn(*args)
            return call

        G = self.G
        try:  # compile now, at load: batch 1, then batch 7 (all targets), dynamic
            enc = torch.compile(_as_module(G.encode))
            dec = torch.compile(_as_module(G.decode_parts))
            self._encode, self._decode, self.compiled = frozen(enc), frozen(dec), True
            x = torch.zeros(1, 1, FACE_SIZE, FACE_SIZE, device=self.device)
            eye = torch.eye(NUM_CLASSES, device=self.device)
            with self._no_grad():
                feats = self._encode(x)
                self._decode(feats, eye[:1])
                self._decode([f.expand(NUM_CLASSES, *f.shape[1:]).contiguous() for f in feats],
                             eye)
        except Exception as e:  # no compiler, unsupported platform, ...
            why = error_reason(e, prefer="error:")  # the compiler's own line, where there is one
            print(f"ccyclegan: torch.compile failed ({why}); running eager PyTorch",
                  file=sys.stderr)
            self._encode, self._decode, self.compiled = G.encode, G.decode_parts, False

    def encode(self, x: np.ndarray):
        with self._no_grad():
            return self._encode(torch.from_numpy(x).to(self.device))

    def decode(self, feats, c: np.ndarray, rows: np.ndarray) -> Parts:
        with self._no_grad():
            idx = torch.from_numpy(rows).to(self.device)
            picked = [f.index_select(0, idx) for f in feats]
            parts = self._decode(picked, torch.from_numpy(c).to(self.device))
            return tuple(None if p is None else p.float().cpu().numpy() for p in parts)


def _as_module(method):
    """A bound method as a module, so torch.compile (and freezing) see the generator's
    parameters as the module's own."""

    class Call(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.owner = method.__self__

        def forward(self, *args):
            return getattr(self.owner, method.__name__)(*args)

    return Call()


class OnnxBackend:
    """An exported G(x|c) in onnxruntime; "encoding" is the faces themselves."""

    name = "onnxruntime"

    def __init__(self, session):
        self.session = session

    def encode(self, x: np.ndarray):
        return x

    def decode(self, x: np.ndarray, c: np.ndarray, rows: np.ndarray) -> Parts:
        face = np.ascontiguousarray(x[rows])
        out = self.session.run(None, {"face": face, "condition": c})
        return (out[0], *out[1:3]) if len(out) >= 3 else (out[0], None, None)


def onnx_session(path: Path, threads: int | None, device: str | None,
                 model: bytes | None = None):
    """An onnxruntime session for the .onnx file path (or the serialized model, named path)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise TranslateError("the onnxruntime backend needs onnxruntime: "
                             "pip install 'ccyclegan[export]'") from None
    if model is None and not path.is_file():
        raise CheckpointError(f"{path}: ONNX model not found")
    opts = ort.SessionOptions()
    # Default: every core. Worker threads busy-wait between the graph's nodes (a pass is ~60
    # small kernels: waking a sleeping thread for each costs a quarter of the pass) but stop
    # the moment a run returns, so they never take the cores from OpenCV's face detection.
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    providers = ["CPUExecutionProvider"]
    if (device and str(device).startswith("cuda")
            and "CUDAExecutionProvider" in ort.get_available_providers()):
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(path) if model is None else model, opts,
                                       providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise CheckpointError(f"{path}: not a valid ONNX model ({error_reason(e)})") from None
    names = [i.name for i in session.get_inputs()]
    if names != ["face", "condition"]:
        raise TranslateError(f"{path}: expected inputs (face, condition), got {names}; "
                             "export it with `ccyclegan export --format onnx`")
    return session


def check_onnx_config(session, path: Path) -> None:
    """Refuse an exported model whose config (in its metadata) asks for an input blur: it was
    trained on FER2013 version 1's blurred faces (config.drop_input_blur)."""
    meta = session.get_modelmeta().custom_metadata_map
    try:
        cfg = json.loads(meta.get("ccyclegan.config", "{}"))
    except ValueError:
        return
    if isinstance(cfg, dict):
        try:
            drop_input_blur(cfg, f"{path} (config)")
        except ConfigError as e:
            raise CheckpointError(str(e)) from None
