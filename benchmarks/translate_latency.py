"""Latency of `ccyclegan translate` on the CPU, model loading excluded.

Prints one JSON object. Each item is timed two ways, as the median over --reps runs after a
warm-up: "wall_ms" (what a user waits, here and now) and "cpu_ms" (CPU time of this process:
with one thread, what the same call takes on an idle core; on a machine shared with other jobs
the wall time also counts the waits for a core):

* generator_torch / generator_torch_compiled / generator_onnxruntime: one G(x|c) call, batch 1
  (one face); compiled = `--compile` (torch.compile with frozen weights, compiled at load);
  generator_onnxruntime_spinning: the same model with onnxruntime's worker threads still
  busy-waiting after a run returns (onnxruntime's default; the package's session stops them
  then, so that they leave the cores to OpenCV's face detection);
  generator_onnxruntime_sleeping: with threads that never busy-wait (the package's session
  until 2026-12-07);
* edit / edit_a0.5 / edit_compiled / edit_onnxruntime: the whole per-face edit (encode once,
  decode under the target, blend x + a (G(x|t) - x));
* detect, crop, paste: the photo steps;
* pipeline / pipeline_a0.5 / pipeline_compiled / pipeline_onnxruntime: a 1280x720 RGB photo
  with one face, array in, array out (detect, frame, edit, paste back);
  pipeline_onnxruntime_spinning / _sleeping: with those sessions; *_min_face_0.12:
  searching only for faces of at least 12% of the shorter side (default 8%);
* file: the same from a JPEG file to JPEG bytes (decode + pipeline + encode).

    python benchmarks/translate_latency.py [--checkpoint RUN] [--threads 1] [--reps 30]

Without --checkpoint it times a randomly initialised generator of the default size (latency
does not depend on the weights). Needs the dev extra (scikit-image's photos, onnx,
onnxruntime).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def timed(fn, reps: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return {"wall_ms": round(statistics.median(wall) * 1000, 2),
            "cpu_ms": round(statistics.median(cpu) * 1000, 2)}


def photo_1280x720() -> np.ndarray:
    """scikit-image's astronaut (one face) at 720x720, on a background made of its rocket."""
    import cv2
    import skimage.data

    face = cv2.resize(skimage.data.astronaut(), (720, 720), interpolation=cv2.INTER_AREA)
    bg = cv2.resize(skimage.data.rocket(), (1280, 720), interpolation=cv2.INTER_AREA)
    bg[:, 420:1140] = face
    return np.ascontiguousarray(bg)


def plain_session(model: Path | bytes, threads: int | None, spinning: bool):
    """An onnxruntime session (a file or the serialized model) whose worker threads busy-wait
    after a run too (spinning: onnxruntime's default) or never (the package's session until
    2026-12-07); the package's own stops them when a run returns."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="run dir / generator.safetensors (default: random G)")
    ap.add_argument("--threads", type=int, default=1, help="torch/onnxruntime/OpenCV threads")
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()

    import cv2

    from ccyclegan.core.config import Config
    from ccyclegan.core.generator_files import save_generator
    from ccyclegan.core.models import Generator, init_weights
    from ccyclegan.translate.api import ExpressionTranslator
    from ccyclegan.translate.export import onnx_bytes
    from ccyclegan.translate.faces import crop_face, detect_faces, frame_box
    from ccyclegan.translate.paste import border_fade, paste_edit

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    n = args.reps
    res: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint
        if path is None:
            torch.manual_seed(0)
            cfg = Config()
            G0 = Generator(cfg.gen_channels, label_mode=cfg.label_mode)
            init_weights(G0)
            path = Path(tmp) / "generator.safetensors"
            save_generator(path, G0, cfg, {})
        tr = ExpressionTranslator.load(path, "cpu", threads=args.threads)
        G = tr._backend.G  # what the file holds: a Generator, or an Ensemble (several passes)
        onnx_path = Path(tmp) / "g.onnx"
        onnx_path.write_bytes(onnx_bytes(G, tr.config.to_dict()))
        tr_onnx = ExpressionTranslator.load(onnx_path, threads=args.threads)
        t0 = time.perf_counter()
        tr_comp = ExpressionTranslator.load(path, "cpu", threads=args.threads, compile=True)
        compile_s = time.perf_counter() - t0
        assert tr_comp._backend.compiled, "torch.compile failed"
        comp = tr_comp._backend
        session = tr_onnx._backend.session

        rng = np.random.default_rng(0)
        x = torch.from_numpy(rng.uniform(-1, 1, (1, 1, 48, 48)).astype(np.float32))
        c = torch.zeros(1, 7)
        c[0, 3] = 1.0
        xn, cn = x.numpy(), c.numpy()
        with torch.inference_mode():
            res["generator_torch"] = timed(lambda: G(x, c), 4 * n)
        with torch.no_grad():
            res["generator_torch_compiled"] = timed(lambda: comp._decode(comp._encode(x), c),
                                                    4 * n)
        res["generator_onnxruntime"] = timed(
            lambda: session.run(None, {"face": xn, "condition": cn}), 4 * n)
        spinning = plain_session(onnx_path, args.threads, spinning=True)
        res["generator_onnxruntime_spinning"] = timed(
            lambda: spinning.run(None, {"face": xn, "condition": cn}), 4 * n)
        sleeping = plain_session(onnx_path, args.threads, spinning=False)
        res["generator_onnxruntime_sleeping"] = timed(
            lambda: sleeping.run(None, {"face": xn, "condition": cn}), 4 * n)

        photo = photo_1280x720()
        boxes = detect_faces(photo)
        assert len(boxes) == 1, f"expected one face in the benchmark photo, found {boxes}"
        frame = frame_box(boxes[0])
        crop = crop_face(photo, frame)[None]
        res["edit"] = timed(lambda: tr.edit(crop, ["happy"], 1.0), 2 * n)
        res["edit_a0.5"] = timed(lambda: tr.edit(crop, ["happy"], 0.5), 2 * n)
        res["edit_compiled"] = timed(lambda: tr_comp.edit(crop, ["happy"], 1.0), 2 * n)
        res["edit_onnxruntime"] = timed(lambda: tr_onnx.edit(crop, ["happy"], 1.0), 2 * n)
        edit = tr.edit_parts(crop, ["happy"], 1.0)[2][0][0]
        res["detect"] = timed(lambda: detect_faces(photo), n)
        res["crop"] = timed(lambda: crop_face(photo, frame), n)
        # the edit at the photo's resolution: field, paint, detail and colour (a 727-pixel frame)
        res["paste"] = timed(lambda: paste_edit(photo.copy(), frame, edit, border_fade(48)), n)
        res["pipeline"] = timed(lambda: tr.translate(photo, to="happy"), n)
        res["pipeline_a0.5"] = timed(lambda: tr.translate(photo, to="happy", intensity=0.5), n)
        res["pipeline_compiled"] = timed(lambda: tr_comp.translate(photo, to="happy"), n)
        res["pipeline_onnxruntime"] = timed(lambda: tr_onnx.translate(photo, to="happy"), n)
        own, tr_onnx._backend.session = tr_onnx._backend.session, spinning  # same translator
        res["pipeline_onnxruntime_spinning"] = timed(
            lambda: tr_onnx.translate(photo, to="happy"), n)
        tr_onnx._backend.session = sleeping
        res["pipeline_onnxruntime_sleeping"] = timed(
            lambda: tr_onnx.translate(photo, to="happy"), n)
        tr_onnx._backend.session = own
        # --min-face 0.12 (faces of at least 86 of the 720 rows): detection's cost falls with
        # the square of the smallest face searched for
        res["detect_min_face_0.12"] = timed(lambda: detect_faces(photo, min_face=0.12), n)
        res["pipeline_min_face_0.12"] = timed(
            lambda: tr.translate(photo, to="happy", min_face=0.12), n)
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, "JPEG", quality=92)
        jpeg = Path(tmp) / "photo.jpg"
        jpeg.write_bytes(buf.getvalue())
        res["file"] = timed(
            lambda: tr.translate(jpeg, to="happy").save(io.BytesIO(), "JPEG", quality=95), n)

    out = {
        "wall_ms": {k: v["wall_ms"] for k, v in res.items()},
        "cpu_ms": {k: v["cpu_ms"] for k, v in res.items()},
        "targets_ms": {"generator": 2.0, "pipeline": 50.0},
        "compile_s": round(compile_s, 1),
        "photo": "1280x720 RGB, one face",
        "face_box": list(boxes[0].as_tuple()),
        "gen_channels": tr.config.gen_channels,
        "threads": args.threads,
        "reps": n,
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
