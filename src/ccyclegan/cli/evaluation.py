"""The evaluation verbs of `ccyclegan`: train-classifier, evaluate, sweep (cli.py registers
them)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from ccyclegan.classifier.config import ClassifierConfig
from ccyclegan.classifier.train import train_classifier
from ccyclegan.cli.args import add_dataclass_args
from ccyclegan.core.checkpoint import (
    BUNDLED_JUDGE,
    BUNDLED_SECOND_JUDGE,
    CheckpointError,
    bundled_model_path,
)
from ccyclegan.core.config import ConfigError
from ccyclegan.evaluate.run import evaluate
from ccyclegan.evaluate.sweep import sweep

CLASSIFIER_HELP = {
    "data": "fer2013.csv(.gz) or a folder train/<emotion>/*.jpg (+ test/...)",
    "out": "run directory: weights, classifier.json, metrics.csv, confusion.png",
    "arch": "vgg (EmotionNet, the judge) or resnet (pre-activation ResNet: a second family, "
            "for a second judge)",
    "width": "channels of the first conv block (blocks: w, 2w, 4w, 8w)",
    "feature_dim": "size of the penultimate layer (the FED features)",
    "dropout": "dropout before the two dense layers",
    "epochs": "training epochs",
    "batch_size": "faces per step",
    "optimizer": "sgd (Nesterov, momentum 0.9) or adamw",
    "lr": "peak learning rate of the one-cycle schedule (0 = 0.05 for sgd, 2e-3 for adamw)",
    "weight_decay": "weight decay of conv/dense weights (-1 = 5e-4 for sgd, 0.05 for adamw)",
    "warmup": "share of the steps for the linear warm-up (then cosine decay)",
    "label_smoothing": "label smoothing of the cross-entropy",
    "class_weight": "none, or balanced: each class weighs n / (7 n_class) in the loss",
    "logit_adjust": "post-hoc logit adjustment: the saved classifier adds -TAU log(class share) "
                    "to its logits so rare emotions are predicted too (0 = off; may change on "
                    "--resume, which then rescores a finished run)",
    "adv_eps": "adversarial training: L2 radius of the worst-case perturbation, pixels in "
               "[-1, 1] (0 = off; 0.5 for a robust loss classifier whose gradient is visible)",
    "adv_steps": "adversarial training: projected gradient steps per batch",
    "shift": "augmentation: max shift in pixels",
    "scale": "augmentation: max relative zoom",
    "rotate": "augmentation: max rotation in degrees",
    "flip": "augmentation: random mirror images",
    "jitter": "augmentation: max relative contrast / brightness change",
    "val_fraction": "share of the Training split held out to pick the best epoch",
    "drop_blank": "drop constant (blank) training faces",
    "limit": "use only the first N training faces (0 = all; for smoke tests)",
    "seed": "seed of the initialisation, data order, augmentation and validation split",
    "device": "auto, cpu, cuda, ...",
    "precision": "auto (fp32 on CPU, AMP on CUDA), fp32, bf16 (fast on CPUs with "
                 "AVX512-BF16/AMX), fp16 (CUDA)",
    "threads": "CPU threads for torch (0 = torch's default)",
}


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None


def cmd_train_classifier(args: argparse.Namespace) -> int:
    overrides = {f.name: getattr(args, f.name) for f in fields(ClassifierConfig)
                 if hasattr(args, f.name)}
    try:
        summary = train_classifier(ClassifierConfig(**overrides), resume=args.resume,
                                   overrides=overrides)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (StopFlag), between two steps
        print("interrupted: the state after the last finished epoch is kept; continue with "
              "--resume", file=sys.stderr)
        sig = e.args[0] if e.args and isinstance(e.args[0], int) else 2
        return 128 + sig
    test = summary.get("test")
    if test:
        print(f"done: test accuracy {test['accuracy']:.4f}; {summary['config']['out']}")
    else:
        print(f"done (no test split to score); {summary['config']['out']}")
    return 0


def judges(classifier: str | None, second: str | None) -> tuple[str, str | None]:
    """The judges of `evaluate`: yours, or those bundled with the package (the second one by
    default only when the first is bundled too, and only where this install ships it: yours
    stays alone unless you name another).
    """
    if second is not None and second.lower() == "none":
        second = None
    elif second is None and classifier is None:
        path = bundled_model_path(BUNDLED_SECOND_JUDGE)
        second = None if path is None else str(path)
    if classifier is None:
        classifier = _bundled(BUNDLED_JUDGE)
    return classifier, second


def _bundled(name: str) -> str:
    path = bundled_model_path(name)
    if path is None:
        raise CheckpointError(f"no bundled judge in this install (ccyclegan/{name}); pass "
                              "--classifier RUN (a `ccyclegan train-classifier` run)")
    return str(path)


def cmd_evaluate(args: argparse.Namespace) -> int:
    classifier, second = judges(args.classifier, args.second_classifier)
    evaluate(args.checkpoint, args.data, classifier, out=args.out, limit=args.limit,
             seed=args.seed, inception_weights=args.inception_weights,
             fid_resize=args.fid_resize, use_inception=not args.no_fid,
             batch_size=args.batch_size, device=args.device, threads=args.threads,
             kid_subset_size=args.kid_subset_size, kid_subsets=args.kid_subsets,
             second_classifier=second, identity=args.identity,
             identity_faces=args.identity_faces, intensity=args.intensity)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    base = {}
    if args.config:
        try:
            base = json.loads(open(args.config).read())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{args.config}: cannot read config JSON: {e}") from None
        if not isinstance(base, dict):
            raise ConfigError(f"{args.config}: expected a JSON object, got {type(base).__name__}")
        for k in ("data", "out", "lr", "lambda_cl", "lambda_cyc", "max_steps", "seed"):
            base.pop(k, None)
    res = sweep(args.data, args.out, args.classifier, args.lr, args.lambda_cl, args.lambda_cyc,
                args.max_steps, eval_limit=args.eval_limit, seed=args.seed, base=base,
                fid=args.fid, inception_weights=args.inception_weights,
                threads=args.threads, progress_bar=not args.no_progress)
    return 130 if res["interrupted"] else 0


def add_eval_parsers(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("train-classifier",
                       help="train the emotion classifier that judges expressions (evaluate)")
    c.add_argument("--resume", action="store_true",
                   help="continue the run in --out after its last finished epoch")
    add_dataclass_args(c, ClassifierConfig, CLASSIFIER_HELP)
    c.set_defaults(func=cmd_train_classifier)

    e = sub.add_parser("evaluate", help="expression accuracy, FED/FID/KID and content "
                                        "preservation of a generator on the test split")
    e.add_argument("--checkpoint", required=True,
                   help="run directory, generator.safetensors or checkpoint.safetensors")
    e.add_argument("--data", required=True, help="fer2013.csv(.gz) or image folder (test split)")
    e.add_argument("--classifier",
                   help="the judge: a train-classifier run directory or classifier.safetensors "
                        "(default: the bundled judge, a VGG of width 64)")
    e.add_argument("--second-classifier", metavar="PATH",
                   help="a second judge (another architecture family, never in a training "
                        "loss), scored the same way (default: the bundled ResNet judge when "
                        "--classifier is not given; 'none' for none)")
    e.add_argument("--identity", action=argparse.BooleanOptionalAction, default=None,
                   help="same-person check with dlib's face descriptor (the eval extra); "
                        "default: when installed")
    e.add_argument("--identity-faces", type=int, default=200,
                   help="faces whose translations get the same-person check (default 200)")
    e.add_argument("--intensity", type=float, default=1.0,
                   help="edit strength as in translate: x + a (G(x|target) - x) (default 1)")
    e.add_argument("--out", help="output directory (default: <run dir>/eval)")
    e.add_argument("--limit", type=int, default=0,
                   help="evaluate a seeded random subset of N test faces (0 = all)")
    e.add_argument("--seed", type=int, default=0,
                   help="seed of the subset, the KID subsets and the real halves")
    e.add_argument("--inception-weights", metavar="PATH",
                   help="FID Inception weights (.pth or .safetensors); default: the torch hub "
                        "cache (pt_inception-2015-12-05-6726825d.pth)")
    e.add_argument("--fid-resize", choices=("tf", "pytorch-fid"), default="tf",
                   help="299x299 resize as TensorFlow/torch-fidelity (tf) or pytorch-fid")
    e.add_argument("--no-fid", action="store_true", help="skip FID/KID (Inception)")
    e.add_argument("--kid-subset-size", type=int, default=1000)
    e.add_argument("--kid-subsets", type=int, default=100)
    e.add_argument("--batch-size", type=int, default=128)
    e.add_argument("--device", default="auto")
    e.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("sweep", help="grid over lr, lambda_cl, lambda_cyc with a fixed step "
                                     "budget; FED per setting (resumable)")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True, help="sweep directory: one subfolder per setting")
    s.add_argument("--classifier", required=True, help="train-classifier run directory")
    s.add_argument("--lr", type=_floats, default=[1e-4, 2e-4, 5e-4],
                   help="comma-separated learning rates (default: 1e-4,2e-4,5e-4)")
    s.add_argument("--lambda-cl", type=_floats, default=[0.5, 1.0, 2.0],
                   help="comma-separated lambda_cl values (default: 0.5,1,2)")
    s.add_argument("--lambda-cyc", type=_floats, default=[1.0, 10.0],
                   help="comma-separated lambda_cyc values (default: 1,10)")
    s.add_argument("--max-steps", type=int, default=2000,
                   help="training steps per setting (default: 2000)")
    s.add_argument("--eval-limit", type=int, default=500,
                   help="test faces (seeded subset) evaluated per setting (0 = all)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--config", help="JSON config for the other training fields")
    s.add_argument("--fid", action="store_true", help="also FID/KID (needs the Inception weights)")
    s.add_argument("--inception-weights", metavar="PATH")
    s.add_argument("--threads", type=int, default=0)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_sweep)
