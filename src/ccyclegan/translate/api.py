"""Change the expression in a user's own photo: the Python API behind `ccyclegan translate`.

    from ccyclegan import ExpressionTranslator

    tr = ExpressionTranslator.load("runs/paper")          # or None: the bundled model
    happy = tr.translate("photo.jpg", to="happy", intensity=0.7)   # -> PIL image
    result = tr.translate_faces("photo.jpg", to="all")    # boxes, crops, changes, ...

Per face: find it (faces.detect_faces), frame it as FER2013 does (48x48 grey), edit it, and
apply the edit to the full-resolution colour photo (paste.paste_edit): the model's displacement
field moves the photo's own pixels, its new content is painted where its mask says. The edit,
with a the intensity in [0, 1]: out = x + a (G(x|target) - x) (and the field a F); the face is
encoded once and decoded once per target. The generator runs in backends.py; the command's
files are photo_files.py's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccyclegan.core.checkpoint import BUNDLED_MODEL, NO_BUNDLED_MODEL, bundled_model_path
from ccyclegan.core.data import EMOTIONS, NUM_CLASSES
from ccyclegan.translate import faces as faces_module
from ccyclegan.translate import paste
from ccyclegan.translate.backends import open_backend
from ccyclegan.translate.faces import (
    FACE_SIZE,
    MIN_FACE,
    ROLL_MIN,
    Box,
    NoFaceError,
    Picture,
    TranslateError,
    crop_face,
    crop_region,
    detect_faces,
    face_roll,
    frame_box,
    luma,
    read_image,
    to_pil,
    warm_up,
    whole_image_frame,
)
from ccyclegan.translate.files import Planned, expand_inputs, output_is_folder, outputs
from ccyclegan.translate.inputs import (
    as_picture,
    check_intensity,
    image_name,
    parse_targets,
    restore,
)
from ccyclegan.translate.paste import (
    FaceEdit,
    border_fade,
    edge_mask,
    flow_of_edit,
    moved_edit,
    paste_edit,  # noqa: F401 (public here)
    paste_turned,
    warp_face,  # noqa: F401 (public here before it moved to paste)
)

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
    "write_translations",
]


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
    edits: dict[str, FaceEdit]  # emotion -> the edit in parts, for the photo's resolution
    roll: float = 0.0  # degrees the frame was turned to stand the face upright (face_roll)


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
                fade = (border_fade(FACE_SIZE) if self.detect
                        else edge_mask(FACE_SIZE, face.frame, pixels.shape))
                edit = face.edits[emotion]
                if paste.MOVE:  # computed here, so crops and 48x48 edits never pay for it
                    edit = flow_of_edit(face.before, edit)
                # paste's switches (SHARPEN, the gates, ...) are read by paste_edit now;
                # seamless cloning is not for --no-detect's whole-image frame
                paste_turned(pixels, face.frame, face.roll, edit, fade,
                             seamless=paste.SEAMLESS and self.detect)
            self._images[emotion] = pixels
        return self._images[emotion]

    def picture(self, emotion: str | None = None) -> Picture:
        return Picture(self.image(emotion), self.original.alpha, self.original.icc_profile)

    def strip(self, tile: int | None = None) -> np.ndarray:
        """One row per face: the face's region in the input, then in each target image, in the
        image's own colours and resolution (tile x tile; default the largest frame's side, so
        the largest face is shown pixel for pixel, but at least 96 pixels)."""
        if tile is None:
            tile = int(max(96, max(f.frame.w for f in self.faces)))
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


def _face_edit(face: np.ndarray, delta: np.ndarray, a: float, mask: np.ndarray | None,
               flow: np.ndarray | None) -> FaceEdit:
    """One face's edit (delta, grey levels) in parts: the field a F, what is painted after the
    move, and the painted share a (1 - A) (None where the model paints nothing new: then its
    whole change is painted over the photo's own detail)."""
    weight = None if mask is None else np.clip(a * (1.0 - mask), 0.0, 1.0)
    if flow is None or a == 0.0 or np.abs(flow).max() < 1e-3:
        return FaceEdit(delta, None, weight, delta)
    return moved_edit(face, delta, np.moveaxis(flow, 0, -1) * a, weight)  # field [48, 48, 2]


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
        by the file's suffix; onnxruntime with a PyTorch checkpoint exports it in memory
        first). threads: if given, torch.set_num_threads (process-wide) or onnxruntime's
        intra-op threads (default: all cores). compile: torch backend only, torch.compile the
        generator at load (seconds, needs a C++ compiler on the CPU), for servers and large
        batches of photos (docs/benchmarks.md).
        """
        if path is None:
            path = bundled_model_path()
            if path is None:
                raise TranslateError(NO_BUNDLED_MODEL)
        path = Path(path)
        backend_, config = open_backend(path, device, backend, threads, compile)
        warm_up()  # the face detector, so the first photo does not pay for loading it
        return cls(backend_, str(path), config)

    # ---------------------------------------------------------------------------- the edit

    def generate(self, faces: np.ndarray, condition: np.ndarray) -> np.ndarray:
        """Raw G(x|c): faces float32 [B,1,48,48] in [-1, 1], condition float32 [B,7]."""
        faces = np.ascontiguousarray(faces, dtype=np.float32)
        condition = np.ascontiguousarray(condition, dtype=np.float32)
        h = self._backend.encode(faces)
        return self._backend.decode(h, condition, np.arange(len(faces)))[0]

    def edit(self, faces: np.ndarray, targets: Sequence[str], intensity: float = 1.0
             ) -> tuple[np.ndarray, np.ndarray]:
        """Edit 48x48 grey faces (uint8 [N, 48, 48]) towards each target:
        out = x + a (G(x|target) - x), so at intensity 1 the face is G's translation itself.

        Nothing about the input face is guessed (its current emotion least of all), so every
        request is G's answer to that target. Returns (after uint8 [N, T, 48, 48], delta
        float32 [N, T, 48, 48] in grey levels).
        """
        after, delta, _ = self.edit_parts(faces, targets, intensity)
        return after, delta

    def edit_parts(self, faces: np.ndarray, targets: Sequence[str], intensity: float = 1.0
                   ) -> tuple[np.ndarray, np.ndarray, list[list[FaceEdit]]]:
        """edit(), plus each edit in the parts a photo applies at its own resolution
        ([face][target] FaceEdit): the field a F, the paint (the edited face minus the moved
        input) and the painted share a (1 - A)."""
        a = check_intensity(intensity)
        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.ndim != 3 or faces.shape[1:] != (FACE_SIZE,) * 2:
            raise TranslateError(f"faces must be uint8 [N, {FACE_SIZE}, {FACE_SIZE}], got "
                                 f"{faces.dtype} {list(faces.shape)}")
        t_idx = np.array([EMOTIONS.index(t) for t in targets], dtype=np.int64)
        n, t = len(faces), len(t_idx)
        shape = (n, t, FACE_SIZE, FACE_SIZE)
        x = (faces.astype(np.float32) / 127.5 - 1.0)[:, None]  # [N, 1, 48, 48]
        mask = flow = None
        if a == 0.0 or n == 0:
            gen = np.broadcast_to(x, shape)
        else:
            h = self._backend.encode(x)
            gen, mask, flow = self._backend.decode(h, np.tile(self._eye[t_idx], (n, 1)),
                                                   np.repeat(np.arange(n), t))
            gen = gen.reshape(shape)
        out = np.clip(x + a * (gen - x), -1.0, 1.0)  # [N, T, 48, 48]
        delta = ((out - x) * 127.5).astype(np.float32)
        after = np.clip(np.rint(faces[:, None].astype(np.float32) + delta), 0, 255)
        edits = [[_face_edit(faces[i], delta[i, j], a,
                             None if mask is None else mask[i * t + j, 0],
                             None if flow is None else flow[i * t + j])
                  for j in range(t)] for i in range(n)]
        return after.astype(np.uint8), delta, edits

    # ---------------------------------------------------------------------------- photos

    def translate_faces(self, image: Any, to: str = "happy", intensity: float = 1.0, *,
                        detect: bool = True, min_face: float = MIN_FACE) -> TranslationResult:
        """Find, frame and edit every face of image (path, PIL image or uint8 array).

        detect=False: the whole image is one face (its centred square), for pre-cropped faces.
        Raises NoFaceError when detection finds no face.
        """
        targets = parse_targets(to)
        a = check_intensity(intensity)
        pic, _, _ = as_picture(image)
        return self.translate_picture(pic, targets, a, detect, min_face, image_name(image))

    def translate_picture(self, pic: Picture, targets: tuple[str, ...], a: float,
                          detect: bool, min_face: float, name: str) -> TranslationResult:
        """translate_faces for a Picture already read, with targets and intensity already
        checked (parse_targets, check_intensity); name is the image's in messages."""
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
        rolls = [0.0] * len(frames)
        if detect and faces_module.TURN:  # read now, as paste's switches are
            grey = luma(pic.pixels)  # once, not once per face
            rolls = [r if abs(r := face_roll(grey, f)) >= ROLL_MIN else 0.0 for f in frames]
        crops = np.stack([crop_face(pic.pixels, f, roll=r)
                          for f, r in zip(frames, rolls, strict=True)])
        after, delta, edits = self.edit_parts(crops, targets, a)
        faces = [
            FaceResult(
                box=b, frame=f, before=crops[i],
                after={t: after[i, j] for j, t in enumerate(targets)},
                delta={t: delta[i, j] for j, t in enumerate(targets)},
                edits={t: edits[i][j] for j, t in enumerate(targets)}, roll=rolls[i],
            )
            for i, (b, f) in enumerate(zip(boxes, frames, strict=True))
        ]
        return TranslationResult(pic, targets, a, faces, detect)

    def translate(self, image: Any, to: str = "happy", intensity: float = 1.0, *,
                  detect: bool = True, min_face: float = MIN_FACE) -> Any:
        """The image with every face changed to emotion ``to``, of the kind given: a PIL image
        for a path or a PIL image, a uint8 array of the same layout for an array. ``to="all"``
        gives a strip per face (rows): the input, then each of the 7 emotions; several,
        comma-separated ("sad,angry"), a strip of those."""
        targets = parse_targets(to)
        a = check_intensity(intensity)
        pic, kind, detail = as_picture(image)
        result = self.translate_picture(pic, targets, a, detect, min_face, image_name(image))
        if len(targets) == 1:
            return restore(result.picture(), kind, detail)
        strip = Picture(result.strip(), None, pic.icc_profile)
        if kind == "array" and len(detail) == 3 and detail[2] == 1:
            return strip.pixels[:, :, None] if strip.pixels.ndim == 2 else strip.pixels
        return to_pil(strip) if kind == "pil" else strip.pixels


# --------------------------------------------------------------------------------------------
# Files


def translate_files(translator: ExpressionTranslator, inputs: Sequence[str | os.PathLike[str]],
                    to: str, intensity: float = 1.0, **options: Any
                    ) -> tuple[list[Path], list[str]]:
    """Translate image files and folders and write the results; returns (written, errors).
    The API's entry: checks `to` and `intensity`, then write_translations (its options)."""
    return write_translations(translator, inputs, parse_targets(to), check_intensity(intensity),
                              **options)


def write_translations(translator: ExpressionTranslator,
                       inputs: Sequence[str | os.PathLike[str]], targets: tuple[str, ...],
                       a: float, *, out: str | os.PathLike[str] | None = None,
                       crop_only: bool = False, detect: bool = True, min_face: float = MIN_FACE,
                       overwrite: bool = False, keep_going: bool = False,
                       log=None) -> tuple[list[Path], list[str]]:
    """translate_files with targets and intensity already checked (the command line's edge).

    Outputs: photo_happy.jpg beside the input (or in the folder ``out``; ``out`` with an
    image suffix and a single input is the file itself); several targets: photo_all.jpg (or
    photo_sad-angry.jpg), a strip per face; crop_only: photo_happy_face1.png, ... (48x48, or
    the input and each target side by side).
    Everything is computed before anything is written, so an error writes nothing (unless
    keep_going: then failed inputs are reported and skipped). Never overwrites an input
    unless overwrite. log gets one line per image, only once its files are written."""
    files = expand_inputs(inputs)
    out_path = Path(out) if out is not None else None
    out_is_dir = output_is_folder(inputs, files, out_path)
    plan = Planned(files, overwrite)
    said: list[tuple[str, list[Path]]] = []
    errors: list[str] = []
    for src in files:
        try:
            pic = read_image(src)
            result = translator.translate_picture(pic, targets, a, detect, min_face, str(src))
            blobs = outputs(src, result, targets, pic, crop_only, out_path, out_is_dir)
            plan.add(src, blobs)
            n = len(result.faces)
            where = "; ".join(f"at x={f.box.x} y={f.box.y} {f.box.w}x{f.box.h}"
                              for f in result.faces)
            said.append((f"{src}: {n} face{'s' if n != 1 else ''} ({where})",
                         [d for d, _ in blobs]))
        except TranslateError as e:
            if not keep_going:
                raise
            errors.append(str(e))
    written = plan.write()
    if log is not None:  # only now: a line never claims a file that was not written
        for what, dests in said:
            log(f"{what} -> " + ", ".join(str(d) for d in dests))
    return written, errors
