"""`ccyclegan VERB`: one verb per job, sane defaults, every config field a flag."""

from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import MISSING, fields

from ccyclegan.config import Config, ConfigError

HELP = {
    "data": "fer2013.csv(.gz) or a folder train/<emotion>/*.jpg",
    "out": "run directory: config, metrics, samples, checkpoints",
    "flip": "random horizontal flips",
    "drop_blank": "drop constant (blank) faces, counted in the log",
    "gen_channels": "generator width (first layer)",
    "disc_channels": "discriminator width (first layer)",
    "label_mode": "where the emotion enters G: the bottleneck (paper) or also tiled planes",
    "spectral_norm": "spectral normalisation in D",
    "adv_loss": "adversarial loss: bce (paper), lsgan or hinge",
    "cycle_mode": "reconstruction G_dec(G_enc(x)|y_x) (paper), cycle G(G(x|y)|y_x), or both",
    "lambda_cl": "weight of the emotion-classification loss",
    "lambda_cyc": "weight of the reconstruction/cycle L1 loss",
    "targets": "random: one other emotion per face; all: each of the other 6",
    "lr": "Adam learning rate (G and D)",
    "batch_size": "faces per step (per process under torchrun)",
    "d_steps_per_g": "D updates per G update",
    "ema_decay": "generator EMA decay (0 = off); samples and exports use the EMA",
    "epochs": "epochs to train (ignored when --max-steps is set)",
    "max_steps": "stop after this many optimisation steps in total (0 = use --epochs)",
    "device": "auto, cpu, cuda, cuda:1, ...",
    "precision": "auto (AMP on CUDA, fp32 on CPU), fp32, bf16, fp16 (CUDA)",
    "threads": "CPU threads for torch (0 = torch's default)",
    "compile": "torch.compile the models",
    "ckpt_every": "checkpoint every N steps",
    "sample_every": "write a sample grid every N steps",
    "log_every": "log metrics every N steps",
}


def add_config_args(p: argparse.ArgumentParser) -> None:
    """One flag per Config field; defaults suppressed so we know what the user set."""
    hints = typing.get_type_hints(Config)
    for f in fields(Config):
        hint = hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        kw: dict[str, typing.Any] = {"default": argparse.SUPPRESS, "dest": f.name,
                                     "help": f"{HELP.get(f.name, '')} (default: {default})"}
        if hint is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(hint) is typing.Literal:
            p.add_argument(flag, choices=typing.get_args(hint), **kw)
        else:
            p.add_argument(flag, type=hint, metavar=f.name.upper(), **kw)


def cmd_train(args: argparse.Namespace) -> int:
    from ccyclegan.train import train

    overrides = {f.name: getattr(args, f.name) for f in fields(Config) if hasattr(args, f.name)}
    if args.config:
        base = Config.load(args.config).to_dict()
        base.update(overrides)
        cfg = Config.from_dict(base)
    else:
        cfg = Config(**overrides)
    result = train(cfg, resume=args.resume, overrides=overrides,
                   progress_bar=not args.no_progress)
    if result["interrupted"]:
        print(f"interrupted at step {result['step']}: checkpoint saved in {result['run_dir']}; "
              f"continue with --resume", file=sys.stderr)
        return 130
    print(f"done: {result['step']} steps; run in {result['run_dir']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ccyclegan", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True)
    t = sub.add_parser("train", help="train CCycleGAN on FER2013 or an image folder",
)
    t.add_argument("--config", help="JSON config file; flags override it")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(t)
    t.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    from ccyclegan.checkpoint import CheckpointError
    from ccyclegan.data import DataError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"ccyclegan {args.verb}: error: {e}", file=sys.stderr)
        return 2
