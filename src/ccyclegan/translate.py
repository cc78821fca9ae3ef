"""Change the expression in a user's own photo: the Python API behind `ccyclegan translate`.

    from ccyclegan import ExpressionTranslator

    tr = ExpressionTranslator.load("runs/paper")          # or None: the bundled model
    happy = tr.translate("photo.jpg", to="happy", intensity=0.7)   # -> PIL image
    result = tr.translate_faces("photo.jpg", to="all")    # boxes, crops, changes, ...

Per face: find it (faces.detect_faces), frame it as FER2013 does (48x48 grey), edit it, and
paste the change back into the full-resolution colour photo (faces.paste_delta).

The edit, with a the intensity in [0, 1]: out = x + a (G(x|target) - x). At a = 1 it is G's
translation itself, at a = 0 the input. It needs nothing about the input face: an earlier edit
subtracted G(x|s) for a guessed current emotion s, and a wrong guess (two times in three on
PublicTest) weakened the change or, when s was the target, cancelled it. The face is encoded
once and decoded once per target.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ccyclegan.checkpoint import (
    BUNDLED_MODEL,
    NO_BUNDLED_MODEL,
    CheckpointError,
    atomic_write_bytes,
    bundled_model_path,
)
from ccyclegan.config import ConfigError, drop_input_blur
from ccyclegan.data import EMOTIONS, NUM_CLASSES
from ccyclegan.export import onnx_bytes
from ccyclegan.faces import (
    FACE_SIZE,
    MIN_FACE,
    Box,
    NoFaceError,
    Picture,
    TranslateError,
    check_size,
    crop_face,
    crop_region,
    detect_faces,
    edge_mask,
    encode_image,
    face_mask,
    frame_box,
    from_pil,
    paste_delta,
    read_image,
    to_pil,
    whole_image_frame,
)
from ccyclegan.gan_checkpoint import load_generator
from ccyclegan.runtime import resolve_device

__all__ = [
    "BUNDLED_MODEL",
    "ExpressionTranslator",
    "FaceResult",
    "NoFaceError",
    "TranslateError",
    "TranslationResult",
    "bundled_model_path",
    "check_intensity",
    "parse_targets",
    "translate_files",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm",
                  ".pgm", ".pnm")
_WRITABLE = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def parse_targets(to: str) -> tuple[str, ...]:
    """An emotion name (any case) -> (name,); "all" -> all 7 in EMOTIONS order."""
    key = str(to).strip().lower()
    if key == "all":
        return EMOTIONS
    if key in EMOTIONS:
        return (key,)
    raise TranslateError(f"unknown emotion {to!r} (choose one of {', '.join(EMOTIONS)}, or all)")


def check_intensity(value: Any) -> float:
    """A float in [0, 1] (strings accepted, for the command line)."""
    try:
        a = float(value)
    except (TypeError, ValueError):
        raise TranslateError(f"intensity must be a number in [0, 1], got {value!r}") from None
    if not math.isfinite(a) or not 0.0 <= a <= 1.0:
        raise TranslateError(f"intensity must be in [0, 1], got {value!r}")
    return a


# --------------------------------------------------------------------------------------------
# Backends: G(x|c) with the encoding shared between decodes (torch) or recomputed (onnxruntime)


class _TorchBackend:
    name = "torch"

    def __init__(self, G, device, compile: bool = False):
        self.G = G
        self.device = device
        self.compiled = False
        self._encode, self._decode = G.encode, G.decode
        if compile:
            self._compile()

    def _no_grad(self):
        import torch

        # inductor's freezing (weights as constants, prepacked for oneDNN) needs no_grad;
        # eager mode is a little faster under inference_mode
        return torch.no_grad() if self.compiled else torch.inference_mode()

    def _compile(self) -> None:
        """torch.compile the encoder and the decoder with inductor's weight freezing.

        Eager PyTorch at batch 1 spends most of its time outside the convolutions (per-operator
        overhead, weight reorders for oneDNN); compiled, one face takes about 1.5 ms instead of
        3.7 on two cores. Compiling costs ~15 s at load (batch 1, then a dynamic batch size) and
        needs a C++ compiler on the CPU; when it fails we warn and stay eager.
        """
        import sys

        import torch
        import torch._inductor.config as inductor

        def frozen(fn):
            def call(*args):
                with inductor.patch(freezing=True):
                    return fn(*args)
            return call

        G = self.G
        try:  # compile now, at load: batch 1, then batch 7 (all targets), dynamic
            enc = torch.compile(_as_module(G.encode))
            dec = torch.compile(_as_module(G.decode))
            self._encode, self._decode, self.compiled = frozen(enc), frozen(dec), True
            x = torch.zeros(1, 1, FACE_SIZE, FACE_SIZE, device=self.device)
            eye = torch.eye(NUM_CLASSES, device=self.device)
            with self._no_grad():
                feats = self._encode(x)
                self._decode(feats, eye[:1])
                self._decode([f.expand(NUM_CLASSES, *f.shape[1:]).contiguous() for f in feats],
                             eye)
        except Exception as e:  # no compiler, unsupported platform, ...
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            print(f"ccyclegan: torch.compile failed ({why}); running eager PyTorch",
                  file=sys.stderr)
            self._encode, self._decode, self.compiled = G.encode, G.decode, False

    def encode(self, x: np.ndarray):
        import torch

        with self._no_grad():
            return self._encode(torch.from_numpy(x).to(self.device))

    def decode(self, feats, c: np.ndarray, rows: np.ndarray) -> np.ndarray:
        import torch

        with self._no_grad():
            idx = torch.from_numpy(rows).to(self.device)
            picked = [f.index_select(0, idx) for f in feats]
            out = self._decode(picked, torch.from_numpy(c).to(self.device))
            return out.float().cpu().numpy()


def _as_module(method):
    """A bound method as a module, so torch.compile (and freezing) see the generator's
    parameters as the module's own."""
    import torch

    class Call(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.owner = method.__self__

        def forward(self, *args):
            return getattr(self.owner, method.__name__)(*args)

    return Call()


class _OnnxBackend:
    name = "onnxruntime"

    def __init__(self, session):
        self.session = session

    def encode(self, x: np.ndarray):
        return x

    def decode(self, x: np.ndarray, c: np.ndarray, rows: np.ndarray) -> np.ndarray:
        face = np.ascontiguousarray(x[rows])
        return self.session.run(None, {"face": face, "condition": c})[0]


def _onnx_session(path: Path, threads: int | None, device: str | None,
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
    # Default: every core (measured faster for one face on 2 cores: 1.2 vs 2.2 ms), without
    # busy-waiting threads, which would steal the cores from OpenCV's face detection.
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if (device and str(device).startswith("cuda")
            and "CUDAExecutionProvider" in ort.get_available_providers()):
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(path) if model is None else model, opts,
                                       providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a valid ONNX model ({why})") from None
    names = [i.name for i in session.get_inputs()]
    if names != ["face", "condition"]:
        raise TranslateError(f"{path}: expected inputs (face, condition), got {names}; "
                             "export it with `ccyclegan export --format onnx`")
    return session


def _check_onnx_config(session, path: Path) -> None:
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


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class FaceResult:
    """One face: where it is, what the model saw and made of it."""

    box: Box  # the detector's box in the upright photo (the frame itself with --no-detect)
    frame: Box  # the square FER-style frame that was cropped (may extend past the edges)
    before: np.ndarray  # 48x48 uint8 grey, the model's input
    after: dict[str, np.ndarray]  # emotion -> 48x48 uint8 grey, the edited face
    delta: dict[str, np.ndarray]  # emotion -> 48x48 float32, after - before in grey levels


@dataclass
class TranslationResult:
    """Every face of one image, and the image with the faces pasted back (on demand)."""

    original: Picture
    targets: tuple[str, ...]
    intensity: float
    faces: list[FaceResult]
    detect: bool = True
    _images: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def image(self, emotion: str | None = None) -> np.ndarray:
        """The whole image (HxW or HxWx3 uint8) with every face changed to emotion (default:
        the only target)."""
        if emotion is None:
            if len(self.targets) != 1:
                raise TranslateError("several targets: say which emotion's image you want")
            emotion = self.targets[0]
        if emotion not in self.targets:
            raise TranslateError(f"{emotion!r} was not a target ({', '.join(self.targets)})")
        if emotion not in self._images:
            pixels = self.original.pixels.copy()
            for face in self.faces:
                mask = (face_mask() if self.detect
                        else edge_mask(FACE_SIZE, face.frame, pixels.shape))
                paste_delta(pixels, face.frame, face.delta[emotion], mask)
            self._images[emotion] = pixels
        return self._images[emotion]

    def picture(self, emotion: str | None = None) -> Picture:
        return Picture(self.image(emotion), self.original.alpha, self.original.icc_profile)

    def strip(self, tile: int | None = None) -> np.ndarray:
        """One row per face: the face's region in the input, then in each target image, in the
        image's own colours and resolution (tile x tile, default the frame size within
        96..256 pixels)."""
        if tile is None:
            side = max(f.frame.w for f in self.faces)
            tile = int(min(256, max(96, side)))
        rows = []
        for face in self.faces:
            tiles = [crop_region(self.original.pixels, face.frame, tile)]
            tiles += [crop_region(self.image(e), face.frame, tile) for e in self.targets]
            rows.append(np.concatenate(tiles, axis=1))
        return np.concatenate(rows, axis=0)

    def crops(self, index: int) -> np.ndarray:
        """Face index as the model saw it: 48x48 grey, before then each target, side by side
        (one 48x48 face when there is a single target)."""
        face = self.faces[index]
        if len(self.targets) == 1:
            return face.after[self.targets[0]]
        return np.concatenate([face.before] + [face.after[e] for e in self.targets], axis=1)


# --------------------------------------------------------------------------------------------
# Inputs and outputs of the API: give a path, PIL image or array, get the same kind back


def _as_picture(image: Any) -> tuple[Picture, str, Any]:
    """-> (picture, kind, detail) where kind is "pil" or "array"."""
    if isinstance(image, str | os.PathLike):
        return read_image(image), "pil", None
    if isinstance(image, Image.Image):
        check_size(*image.size)
        try:
            return from_pil(image), "pil", image.mode
        except (OSError, ValueError) as e:
            raise TranslateError(f"cannot read this PIL image ({e})") from None
    if isinstance(image, np.ndarray):
        if image.ndim in (2, 3):
            check_size(image.shape[1], image.shape[0])
        if image.dtype != np.uint8:
            raise TranslateError(f"image arrays must be uint8, got {image.dtype}")
        if image.ndim == 2:
            return Picture(np.ascontiguousarray(image)), "array", image.shape
        if image.ndim == 3 and image.shape[2] in (1, 3, 4):
            pixels = image[:, :, 0] if image.shape[2] == 1 else image[:, :, :3]
            alpha = image[:, :, 3].copy() if image.shape[2] == 4 else None
            return Picture(np.ascontiguousarray(pixels), alpha), "array", image.shape
        raise TranslateError(f"image arrays must be HxW (grey) or HxWx3 (RGB), got shape "
                             f"{image.shape}")
    raise TranslateError(f"expected a path, a PIL image or a numpy array, got "
                         f"{type(image).__name__}")


def _restore(pic: Picture, kind: str, detail: Any) -> Any:
    if kind == "pil":  # grey stays "L" ("LA" with alpha), colour "RGB" ("RGBA")
        return to_pil(pic)
    pixels = pic.pixels
    if len(detail) == 3:  # HxWx1, HxWx3, HxWx4 in, same layout out
        if detail[2] == 1:
            pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels[:, :, :1]
        elif detail[2] == 4:
            alpha = pic.alpha if pic.alpha is not None else np.full(pixels.shape[:2], 255,
                                                                    np.uint8)
            pixels = np.dstack([pixels, alpha])
    return pixels


# --------------------------------------------------------------------------------------------
# The translator


class ExpressionTranslator:
    """A loaded generator plus the photo pipeline. Thread-compatible, not thread-safe."""

    def __init__(self, backend, source: str = "", config=None):
        self._backend = backend
        self.source = source  # where the model came from, for messages
        self.config = config
        self._eye = np.eye(NUM_CLASSES, dtype=np.float32)

    def __repr__(self) -> str:
        return f"ExpressionTranslator({self.source!r}, backend={self._backend.name})"

    @property
    def backend(self) -> str:
        return self._backend.name

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, device: str | None = None, *,
             backend: str | None = None, threads: int | None = None,
             compile: bool = False) -> ExpressionTranslator:
        """Load a generator: a run directory, generator.safetensors, a training checkpoint, or
        an exported .onnx (run by onnxruntime); None means the bundled default model.

        device: "cpu" (default), "cuda", "auto". backend: "torch" or "onnxruntime" (default:
        by the file's suffix; onnxruntime with a PyTorch checkpoint exports it in memory first,
        about a second, and then runs faster on a CPU). threads: if given,
        torch.set_num_threads (process-wide) or onnxruntime's intra-op threads (default 1).
        compile: torch backend only, torch.compile the generator at load (~15 s, needs a C++
        compiler on the CPU): ~2.5x faster per face, for servers and large batches of photos.
        """
        if path is None:
            path = bundled_model_path()
            if path is None:
                raise TranslateError(NO_BUNDLED_MODEL)
        path = Path(path)
        if backend is None:
            backend = "onnxruntime" if path.suffix.lower() == ".onnx" else "torch"
        from ccyclegan.faces import warm_up

        if backend == "onnxruntime":
            if compile:
                raise TranslateError("compile applies to the torch backend only")
            model = cfg = None
            if path.suffix.lower() != ".onnx":  # a PyTorch checkpoint: export it in memory
                G, cfg, _ = load_generator(path, "cpu")
                model = onnx_bytes(G, cfg.to_dict())
            session = _onnx_session(path, threads, device, model)
            if cfg is None:
                _check_onnx_config(session, path)
            warm_up()
            return cls(_OnnxBackend(session), str(path), cfg)
        if backend != "torch":
            raise TranslateError(f"unknown backend {backend!r} (torch or onnxruntime)")
        if path.suffix.lower() == ".onnx":
            raise TranslateError(f"{path}: an ONNX model runs with the onnxruntime backend")
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        try:
            dev = resolve_device(device or "cpu")
            G, cfg, _ = load_generator(path, dev)
        except (RuntimeError, AssertionError) as e:  # e.g. cuda on a build without CUDA
            raise TranslateError(f"cannot use device {device!r}: {e}") from None
        G.requires_grad_(False)
        warm_up()
        return cls(_TorchBackend(G, dev, compile), str(path), cfg)

    # ---------------------------------------------------------------------------- the edit

    def generate(self, faces: np.ndarray, condition: np.ndarray) -> np.ndarray:
        """Raw G(x|c): faces float32 [B,1,48,48] in [-1, 1], condition float32 [B,7]."""
        faces = np.ascontiguousarray(faces, dtype=np.float32)
        condition = np.ascontiguousarray(condition, dtype=np.float32)
        h = self._backend.encode(faces)
        return self._backend.decode(h, condition, np.arange(len(faces)))

    def edit(self, faces: np.ndarray, targets: Sequence[str], intensity: float = 1.0
             ) -> tuple[np.ndarray, np.ndarray]:
        """Edit 48x48 grey faces (uint8 [N, 48, 48]) towards each target:
        out = x + a (G(x|target) - x), so at intensity 1 the face is G's translation itself.

        Nothing about the input face is guessed (its current emotion least of all), so every
        request is G's answer to that target. Returns (after uint8 [N, T, 48, 48], delta
        float32 [N, T, 48, 48] in grey levels).
        """
        a = check_intensity(intensity)
        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.ndim != 3 or faces.shape[1:] != (FACE_SIZE,) * 2:
            raise TranslateError(f"faces must be uint8 [N, {FACE_SIZE}, {FACE_SIZE}], got "
                                 f"{faces.dtype} {list(faces.shape)}")
        t_idx = np.array([EMOTIONS.index(t) for t in targets], dtype=np.int64)
        n, t = len(faces), len(t_idx)
        x = (faces.astype(np.float32) / 127.5 - 1.0)[:, None]  # [N, 1, 48, 48]
        if a == 0.0 or n == 0:
            gen = np.broadcast_to(x, (n, t, FACE_SIZE, FACE_SIZE))
        else:
            h = self._backend.encode(x)
            gen = self._backend.decode(h, np.tile(self._eye[t_idx], (n, 1)),
                                       np.repeat(np.arange(n), t))
            gen = gen.reshape(n, t, FACE_SIZE, FACE_SIZE)
        out = np.clip(x + a * (gen - x), -1.0, 1.0)  # [N, T, 48, 48]
        delta = ((out - x) * 127.5).astype(np.float32)
        after = np.clip(np.rint(faces[:, None].astype(np.float32) + delta), 0, 255)
        return after.astype(np.uint8), delta

    # ---------------------------------------------------------------------------- photos

    def translate_faces(self, image: Any, to: str = "happy", intensity: float = 1.0, *,
                        detect: bool = True, min_face: float = MIN_FACE) -> TranslationResult:
        """Find, frame and edit every face of image (path, PIL image or uint8 array).

        detect=False: the whole image is one face (its centred square), for pre-cropped faces.
        Raises NoFaceError when detection finds no face.
        """
        targets = parse_targets(to)
        a = check_intensity(intensity)
        pic, _, _ = _as_picture(image)
        return self._translate_picture(pic, targets, a, detect, min_face,
                                       name=str(image) if isinstance(image, str | os.PathLike)
                                       else "the image")

    def _translate_picture(self, pic: Picture, targets: tuple[str, ...], a: float,
                           detect: bool, min_face: float, name: str) -> TranslationResult:
        if not 0.0 < min_face <= 1.0:
            raise TranslateError(f"min_face must be in (0, 1], got {min_face!r}")
        if detect:
            boxes = detect_faces(pic.pixels, min_face=min_face)
            if not boxes:
                h, w = pic.pixels.shape[:2]
                raise NoFaceError(
                    f"{name}: no face found in the {w}x{h} image (a frontal face at least "
                    f"{min_face:.0%} of the shorter side is needed; for an already cropped face "
                    "use --no-detect / detect=False)")
            frames = [frame_box(b) for b in boxes]
        else:
            frames = [whole_image_frame(pic.pixels.shape)]
            boxes = list(frames)
        crops = np.stack([crop_face(pic.pixels, f) for f in frames])
        after, delta = self.edit(crops, targets, a)
        faces = [
            FaceResult(
                box=b, frame=f, before=crops[i],
                after={t: after[i, j] for j, t in enumerate(targets)},
                delta={t: delta[i, j] for j, t in enumerate(targets)},
            )
            for i, (b, f) in enumerate(zip(boxes, frames, strict=True))
        ]
        return TranslationResult(pic, targets, a, faces, detect)

    def translate(self, image: Any, to: str = "happy", intensity: float = 1.0, *,
                  detect: bool = True, min_face: float = MIN_FACE) -> Any:
        """The image with every face changed to emotion ``to``, of the kind given: a PIL image
        for a path or a PIL image, a uint8 array of the same layout for an array. ``to="all"``
        gives a strip per face (rows): the input, then each of the 7 emotions."""
        targets = parse_targets(to)
        a = check_intensity(intensity)
        pic, kind, detail = _as_picture(image)
        name = str(image) if isinstance(image, str | os.PathLike) else "the image"
        result = self._translate_picture(pic, targets, a, detect, min_face, name)
        if len(targets) == 1:
            return _restore(result.picture(), kind, detail)
        strip = Picture(result.strip(), None, pic.icc_profile)
        if kind == "array" and len(detail) == 3 and detail[2] == 1:
            return strip.pixels[:, :, None] if strip.pixels.ndim == 2 else strip.pixels
        return to_pil(strip) if kind == "pil" else strip.pixels


# --------------------------------------------------------------------------------------------
# Files: what `ccyclegan translate` runs


_OUTPUT_RE = re.compile(r"^(?P<stem>.+)_(?:" + "|".join((*EMOTIONS, "all")) + r")(?:_face\d+)?$")


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; folders -> their image files (not recursive, natural order), skipping
    this command's own earlier outputs (x_happy.jpg beside an x.jpg)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted((f for f in p.iterdir()
                            if f.is_file() and not f.name.startswith(".")
                            and f.suffix.lower() in IMAGE_SUFFIXES),
                           key=lambda f: _natural_key(f.name))
            stems = {f.stem for f in files}
            files = [f for f in files
                     if not ((m := _OUTPUT_RE.match(f.stem)) and m["stem"] in stems)]
            if not files:
                raise TranslateError(f"{p}: no image files in this folder "
                                     f"({', '.join(IMAGE_SUFFIXES)})")
            out.extend(files)
        elif p.exists():
            out.append(p)
        else:
            raise TranslateError(f"{p}: no such file or folder")
    return out


def _natural_key(name: str) -> tuple[Any, ...]:
    return tuple(int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", name))


def _out_suffix(path: Path) -> str:
    s = path.suffix.lower()
    return path.suffix if s in _WRITABLE else ".png"


def _plan_outputs(src: Path, tag: str, n_out: int, crop_only: bool, out: Path | None,
                  out_is_dir: bool) -> list[Path]:
    if out is not None and not out_is_dir:  # -o FILE, one input
        if n_out == 1:
            return [out]
        return [out.with_name(f"{out.stem}_face{k + 1}{out.suffix}") for k in range(n_out)]
    folder = out if out is not None else src.parent
    if crop_only:
        return [folder / f"{src.stem}_{tag}_face{k + 1}.png" for k in range(n_out)]
    return [folder / f"{src.stem}_{tag}{_out_suffix(src)}"]


def translate_files(translator: ExpressionTranslator, inputs: Sequence[str | os.PathLike[str]],
                    to: str, intensity: float = 1.0, *, out: str | os.PathLike[str] | None = None,
                    crop_only: bool = False, detect: bool = True, min_face: float = MIN_FACE,
                    overwrite: bool = False, keep_going: bool = False,
                    log=None) -> tuple[list[Path], list[str]]:
    """Translate image files/folders and write the results; returns (written, errors).

    Outputs: photo_happy.jpg beside the input (or in the folder ``out``; ``out`` with an
    image suffix and a single input is the file itself); ``to="all"``: photo_all.jpg, a strip
    per face; crop_only: photo_happy_face1.png, ... (48x48, or 8 side by side for all).
    Everything is computed before anything is written, so an error writes nothing (unless
    keep_going: then failed inputs are reported and skipped). Never overwrites an input
    unless overwrite.
    """
    targets = parse_targets(to)
    a = check_intensity(intensity)
    tag = "all" if len(targets) > 1 else targets[0]
    files = expand_inputs(inputs)
    out_path = Path(out) if out is not None else None
    out_is_dir = out_path is not None and (
        out_path.is_dir() or len(files) > 1 or any(Path(i).is_dir() for i in inputs)
        or str(out).endswith(("/", os.sep)) or out_path.suffix.lower() not in _WRITABLE)
    input_set = {p.resolve() for p in files}
    planned: dict[Path, Path] = {}
    pending: list[tuple[Path, bytes]] = []
    errors: list[str] = []
    for src in files:
        try:
            pic = read_image(src)
            result = translator._translate_picture(pic, targets, a, detect, min_face, str(src))
            n_out = len(result.faces) if crop_only else 1
            dests = _plan_outputs(src, tag, n_out, crop_only, out_path, out_is_dir)
            blobs = []
            for k, dest in enumerate(dests):
                if crop_only:
                    img = Image.fromarray(result.crops(k))
                elif len(targets) == 1:
                    img = to_pil(result.picture())
                else:
                    img = to_pil(Picture(result.strip(), None, pic.icc_profile))
                blobs.append((dest, encode_image(img, dest.suffix)))
            for dest, _ in blobs:
                r = dest.resolve()
                if r in input_set and not overwrite:
                    raise TranslateError(f"{dest}: would overwrite an input (pass --overwrite "
                                         "or choose another -o)")
                if r in planned:
                    raise TranslateError(f"{dest}: both {planned[r]} and {src} would write it "
                                         "(use separate -o folders)")
                planned[r] = src
            pending.extend(blobs)
            if log is not None:
                n = len(result.faces)
                faces = "; ".join(f"at x={f.box.x} y={f.box.y} "
                                  f"{f.box.w}x{f.box.h}" for f in result.faces)
                log(f"{src}: {n} face{'s' if n != 1 else ''} ({faces}) -> "
                    + ", ".join(str(d) for d, _ in blobs))
        except TranslateError as e:
            if not keep_going:
                raise
            errors.append(str(e))
    written: list[Path] = []
    for dest, data in pending:
        try:
            atomic_write_bytes(dest, data)
        except OSError as e:
            raise TranslateError(f"{dest}: cannot write ({e.strerror or e})") from None
        written.append(dest)
    return written, errors
