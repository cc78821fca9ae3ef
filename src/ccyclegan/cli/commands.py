"""`ccyclegan VERB`: one verb per job, sane defaults, every config field a flag."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from ccyclegan.classifier.nets import export_classifier
from ccyclegan.cli.args import add_dataclass_args
from ccyclegan.cli.evaluation import add_eval_parsers
from ccyclegan.core.checkpoint import CheckpointError
from ccyclegan.core.config import RECIPES, Config, ConfigError
from ccyclegan.core.data import EMOTIONS, DataError
from ccyclegan.core.generator_files import (
    as_ensemble,
    load_generator,
    parse_condition_scale,
    parse_strength,
    strength_text,
)
from ccyclegan.train.loop import train
from ccyclegan.train.runlog import NonFiniteLossError
from ccyclegan.translate.api import (
    ExpressionTranslator,
    TranslateError,
    check_intensity,
    parse_targets,
    write_translations,
)
from ccyclegan.translate.export import export_onnx, export_safetensors
from ccyclegan.translate.web import ServeError, require_web, serve

HELP = {
    "data": "fer2013.csv(.gz) or a folder train/<emotion>/*.jpg",
    "out": "run directory: config, metrics, samples, checkpoints",
    "flip": "random horizontal flips",
    "drop_blank": "drop constant (blank) faces, counted in the log",
    "gen_channels": "generator width (first layer)",
    "disc_channels": "discriminator width (first layer)",
    "label_mode": "where the emotion enters G: the bottleneck (paper), also tiled planes into "
                  "every decoder stage, or norm: also every decoder norm's scale and shift "
                  "(conditional instance norm)",
    "spectral_norm": "spectral normalisation in D",
    "output": "G's last layer: direct (paper: tanh), residual (x + change, US-GAN's ultimate "
              "skip), attention (GANimation: mask A x + (1 - A) colour) or warp (A W(x, F) + "
              "(1 - A) colour: the face moved by a smooth field F, which photos get at their "
              "own resolution)",
    "r1_gamma": "R1 gradient penalty on real faces, gamma/2 E|grad D_rf(x)|^2 (0 = off)",
    "lambda_gp": "WGAN-GP's gradient penalty weight (with --adv-loss wgan-gp)",
    "lambda_mask": "attention output: weight of the mask regulariser (mean A + TV(A)); warp "
                   "output: of the painted share (mean (1 - A) + TV(A))",
    "lambda_flow": "warp output: weight of the displacement field's smoothness",
    "teacher": "distillation: a generator (file or run, e.g. an ensemble export) whose "
               "translations G learns to reproduce",
    "lambda_distill": "weight of |G(x|t) - teacher(x|t)|_1 on the translations (0 = off)",
    "init_from": "start G from this generator's weights (run or file; an ensemble's first "
                 "network); a warp output's field starts at zero",
    "lambda_adv": "weight of G's adversarial loss; with --lambda-cl 0 too, no D is trained "
                  "(a distillation alone)",
    "lambda_change": "weight of the mean |G(x|t) - x| over translations: a sparse edit (0 = off)",
    "expr_classifier": "frozen emotion classifier(s) for an extra G loss ('bundled': the one "
                       "shipped for it): comma-separated "
                       "`ccyclegan train-classifier` run dirs or files; never the judge that "
                       "reports the results",
    "lambda_expr": "weight of the frozen classifiers' cross-entropy on translations (0 = off)",
    "expr_augment": "DiffAugment ops applied to each translation before the frozen classifiers",
    "expr_confidence": "no expression loss for a translation the frozen classifiers already "
                       "read as its target with this probability (0 = plain cross-entropy)",
    "adv_loss": "adversarial loss: bce (paper), lsgan, hinge or wgan-gp",
    "cl_loss": "emotion loss: softmax (poster: D learns real faces only) or sigmoid (author's "
               "code: 7 sigmoids, translations get an all-zero class target)",
    "cycle_mode": "reconstruction G_dec(G_enc(x)|y_x) (paper), cycle G(G(x|y)|y_x), or both",
    "lambda_cl": "weight of the emotion-classification loss",
    "lambda_cyc": "weight of the reconstruction/cycle L1 loss",
    "targets": "random: one other emotion per face; all: each of the other 6",
    "d_augment": "DiffAugment of D's inputs (real and translated faces, D and G updates): "
                 "comma-separated color, translation, cutout; empty = off (paper)",
    "lr": "Adam learning rate (G and D); not scaled with the number of processes",
    "lr_decay": "none (paper) or linear: constant for the first half of the run's steps, then "
                "linearly to 0 (CycleGAN's schedule)",
    "batch_size": "faces per step (per process under torchrun)",
    "d_steps_per_g": "D updates per G update",
    "ema_decay": "generator EMA decay per G update (0 = off; with --d-steps-per-g 5, 0.995 "
                 "spans as many steps as 0.999 at 1:1); samples and exports use the EMA",
    "epochs": "epochs to train (ignored when --max-steps is set)",
    "max_steps": "stop after this many optimisation steps in total (0 = use --epochs)",
    "max_minutes": "also stop after this many minutes of training, summed over resumes "
                   "(0 = no limit; checked every --log-every steps): for comparisons at "
                   "equal wall-clock",
    "device": "auto, cpu, cuda, cuda:1, ...",
    "precision": "auto (AMP on CUDA, fp32 on CPU), fp32, bf16, fp16 (CUDA)",
    "threads": "CPU threads for torch (0 = torch's default)",
    "compile": "torch.compile the models",
    "skip_nonfinite": "skip the update of a step whose loss or gradients are NaN/inf (counted "
                      "in metrics.csv) instead of stopping with an error",
    "ckpt_every": "checkpoint every N steps",
    "sample_every": "write a sample grid every N steps",
    "log_every": "log metrics every N steps",
}


def add_config_args(p: argparse.ArgumentParser) -> None:
    add_dataclass_args(p, Config, HELP)


def cmd_train(args: argparse.Namespace) -> int:
    overrides = {f.name: getattr(args, f.name) for f in fields(Config) if hasattr(args, f.name)}
    overrides = {**RECIPES.get(args.recipe or "", {}), **overrides}  # flags override a recipe
    if args.config:
        base = Config.load(args.config).to_dict()
        base.update(overrides)
        cfg = Config.from_dict(base)
    else:
        cfg = Config(**overrides)
    result = train(cfg, resume=args.resume, overrides=overrides,
                   progress_bar=not args.no_progress)
    quiet = result.get("rank", 0) != 0  # under torchrun, rank 0 speaks for all
    if result["interrupted"]:
        if not quiet:
            print(f"interrupted at step {result['step']}: checkpoint saved in {result['run_dir']}; "
                  f"continue with --resume", file=sys.stderr)
        return 128 + int(result["interrupted"])  # 130 for Ctrl-C, 143 for SIGTERM
    if not quiet:
        n = result.get("skipped_steps", 0)
        skipped = f" ({n} skipped: non-finite loss)" if n else ""
        print(f"done: {result['step']} steps{skipped}; run in {result['run_dir']}")
    return 0


COMPILE_HELP = ("torch backend: compile the generator at load (~15 s, needs a C++ compiler on "
                "a CPU); ~2.5x faster per face after that")


def cmd_translate(args: argparse.Namespace) -> int:
    targets = parse_targets(args.to)  # checked once, here: bad arguments fail before the
    a = check_intensity(args.intensity)  # model loads
    if args.onnx and args.checkpoint:
        raise TranslateError("give --checkpoint or --onnx, not both")
    model = args.onnx or args.checkpoint
    backend = args.backend or ("onnxruntime" if args.onnx else None)
    translator = ExpressionTranslator.load(model, args.device, backend=backend,
                                           threads=args.threads or None, compile=args.compile)
    written, errors = write_translations(
        translator, args.inputs, targets, a, out=args.output,
        crop_only=args.crop_only, detect=not args.no_detect, min_face=args.min_face,
        overwrite=args.overwrite, keep_going=args.keep_going,
        log=None if args.quiet else print)
    for e in errors:
        print(f"ccyclegan translate: error: {e}", file=sys.stderr)
    if errors or len(written) > 1:
        print(f"ccyclegan translate: {len(written)} file{'s' if len(written) != 1 else ''} "
              f"written, {len(errors)} input{'s' if len(errors) != 1 else ''} failed"
              + (" (exit status 1)" if errors else ""), file=sys.stderr if errors else sys.stdout)
    return 1 if errors else 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.classifier:
        if args.checkpoint or args.format != "safetensors":
            raise TranslateError("--classifier exports a classifier alone: give --format "
                                 "safetensors and no --checkpoint")
        out = export_classifier(args.classifier, args.output, half=not args.fp32)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, "
              f"{'fp32' if args.fp32 else 'fp16'})")
        return 0
    strength = None if args.strength is None else parse_strength(args.strength)
    scale = (None if args.condition_scale is None
             else parse_condition_scale(args.condition_scale))
    partners = [p for p in (args.ensemble_with or "").split(",") if p.strip()]
    if args.format == "safetensors":  # a release file: the generator alone, fp16 by default
        out = export_safetensors(args.checkpoint, args.output, strength=strength,
                                 flip_average=args.flip_average,
                                 condition_scale=scale, half=not args.fp32,
                                 ensemble_with=partners)
        G, _, progress = load_generator(out)  # what was written, read back
        G = as_ensemble(G)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, "
              f"{'fp32' if args.fp32 else 'fp16'}, step {progress.get('step')}, "
              f"strength {strength_text(G.strength)}, flip average {G.flip_average}, "
              f"condition scale {strength_text(G.condition_scale)}, "
              f"{len(G.members)} generator(s))")
        return 0
    path = export_onnx(args.checkpoint, args.output, opset=args.opset, strength=strength,
                       flip_average=args.flip_average, condition_scale=scale,
                       ensemble_with=partners)
    print(f"wrote {path}: G(face [B,1,48,48] in [-1,1], condition [B,7]) -> [B,1,48,48]")
    return 0


def add_translate_parsers(sub) -> None:
    names = ", ".join(EMOTIONS)
    t = sub.add_parser(
        "translate", help="change the expression of the faces in your own photos",
        description="Find every face in each photo, change its expression and paste it back "
                    "(photo_happy.jpg beside photo.jpg, or in -o).")
    t.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of them")
    t.add_argument("--to", required=True, metavar="EMOTION",
                   help=f"target emotion: {names}; several comma-separated (sad,angry: a strip "
                        "of each face in those), or all (in all 7)")
    t.add_argument("--intensity", default="1.0", metavar="A",
                   help="0..1: 0 returns the face unchanged, 1 the full expression (default 1)")
    t.add_argument("--checkpoint", metavar="RUN",
                   help="run dir, generator.safetensors, training checkpoint or .onnx "
                        "(default: the bundled model)")
    t.add_argument("--backend", choices=["torch", "onnxruntime"],
                   help="default: torch, or onnxruntime for an .onnx model (onnxruntime with "
                        "a PyTorch checkpoint exports it in memory first)")
    t.add_argument("--onnx", metavar="MODEL.onnx", help="run this exported model (onnxruntime)")
    t.add_argument("-o", "--output", metavar="OUT",
                   help="output folder (or file, for one input); default: beside each input")
    t.add_argument("--crop-only", action="store_true",
                   help="write the translated 48x48 face crops (photo_happy_face1.png, ...)")
    t.add_argument("--no-detect", action="store_true",
                   help="the whole image is the face (pre-cropped faces, e.g. 48x48 FER2013)")
    t.add_argument("--min-face", type=float, default=0.08, metavar="F",
                   help="smallest face to find, as a fraction of the shorter side (default 0.08)")
    t.add_argument("--overwrite", action="store_true",
                   help="allow an output to replace an input file")
    t.add_argument("--keep-going", action="store_true",
                   help="skip (and report) inputs that fail instead of writing nothing")
    t.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    t.add_argument("--threads", type=int, default=0,
                   help="CPU threads for the model (default 0: all cores)")
    t.add_argument("--compile", action="store_true",
                   help=COMPILE_HELP)
    t.add_argument("-q", "--quiet", action="store_true", help="no per-photo lines")
    t.set_defaults(func=cmd_translate)

    e = sub.add_parser("export", help="export the generator (ONNX, or a release safetensors)")
    e.add_argument("--checkpoint", metavar="RUN",
                   help="run dir, generator.safetensors or training checkpoint "
                        "(default: the bundled model)")
    e.add_argument("--classifier", metavar="RUN",
                   help="export this `train-classifier` run instead, as a release "
                        "safetensors (fp16 unless --fp32), as the package ships its judges")
    e.add_argument("--format", choices=["onnx", "safetensors"], default="onnx",
                   help="onnx (default) or safetensors (the generator alone, as bundled)")
    e.add_argument("-o", "--output", required=True, metavar="FILE")
    e.add_argument("--fp32", action="store_true",
                   help="safetensors: keep fp32 weights (default: fp16, half the size)")
    e.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    e.add_argument("--strength", metavar="S",
                   help="ship a weaker (S < 1) or amplified (S > 1) edit: the file's G outputs "
                        "x + S (G(x|t) - x), clipped, 0 < S <= 2; "
                        "or one per target, e.g. 'disgust=0.7,surprise=0.9' (others 1) "
                        "(default: the source's own, 1 for a training run)")
    e.add_argument("--flip-average", action=argparse.BooleanOptionalAction, default=None,
                   help="ship the mean of the edits of the face and of its mirror image "
                        "(twice the compute; default: the source's own, off for a training run)")
    e.add_argument("--condition-scale", metavar="A",
                   help="the decoder reads A x the emotion one-hot: A > 1 strengthens the edit "
                        "in G's own features, 0 < A <= 4; or one per target, e.g. "
                        "'disgust=1.75,happy=1' (others 1) (default: the source's own, 1 for a "
                        "training run)")
    e.add_argument("--ensemble-with", metavar="RUN[,RUN...]",
                   help="more generators of the same architecture, trained apart: the file's "
                        "edit is the mean of all of theirs (the compute grows with each)")
    e.set_defaults(func=cmd_export)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        require_web()  # a missing extra fails before the model loads
        translator = ExpressionTranslator.load(args.checkpoint, args.device,
                                               backend=args.backend, threads=args.threads or None,
                                               compile=args.compile)
        serve(translator, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
              max_queue=args.max_queue)
    except ServeError as e:
        print(f"ccyclegan serve: error: {e}", file=sys.stderr)
        return 2
    return 0


def _positive(value: str) -> float:
    x = float(value)
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return x


def _count(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return n


def _port(value: str) -> int:
    n = int(value)
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535, got {value}")
    return n


def add_serve_parser(sub) -> None:
    s = sub.add_parser(
        "serve", help="a web page to try the model: upload or webcam photo, emotion, intensity",
        description="Load the model once and serve a page (no CDN, nothing from the network) "
                    "where you upload a photo or take one with the webcam, pick an emotion and "
                    "an intensity, and see and download the result. Needs the web extra: "
                    "pip install 'ccyclegan[web]'.")
    s.add_argument("--checkpoint", metavar="RUN",
                   help="run dir, generator.safetensors, training checkpoint or .onnx "
                        "(default: the bundled model)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only)")
    s.add_argument("--port", type=_port, default=7860, help="port (default 7860; 0: any free)")
    s.add_argument("--max-upload-mb", type=_positive, default=10.0, metavar="MB",
                   help="largest photo file accepted, in MB (default 10)")
    s.add_argument("--max-queue", type=_count, default=32, metavar="N",
                   help="photos that may wait for the model; more are answered 503 (default 32)")
    s.add_argument("--backend", choices=["torch", "onnxruntime"],
                   help="default: torch, or onnxruntime for an .onnx model")
    s.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    s.add_argument("--threads", type=int, default=1,
                   help="CPU threads for the model (default 1; 0 = torch's default)")
    s.add_argument("--compile", action="store_true",
                   help=COMPILE_HELP)
    s.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ccyclegan", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True)
    t = sub.add_parser("train", help="train CCycleGAN on FER2013 or an image folder",
)
    t.add_argument("--config", help="JSON config file; flags override it")
    t.add_argument("--recipe", choices=sorted(RECIPES),
                   help="a named starting point, flags override it: paper (the poster), author "
                        "(the author's Keras code), stargan (StarGAN's losses and schedule), "
                        "quick (a first model in ~15 min on a laptop CPU)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(t)
    t.set_defaults(func=cmd_train)
    add_translate_parsers(sub)
    add_serve_parser(sub)
    add_eval_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DataError, CheckpointError, TranslateError, NonFiniteLossError) as e:
        # one line: CheckpointWriteError (disk full, read-only run dir) and NonFiniteLossError
        # say which step failed and which checkpoint on disk is the last good one
        print(f"ccyclegan {args.verb}: error: {e}", file=sys.stderr)
        return 2
