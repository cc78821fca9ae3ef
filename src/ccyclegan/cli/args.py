"""Command-line flags from a config dataclass: shared by cli.py (train) and cli_eval.py
(train-classifier)."""

from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, fields


def add_dataclass_args(p: argparse.ArgumentParser, cls: type,
                       helps: dict[str, str]) -> None:
    """One flag per dataclass field; defaults suppressed so we know what the user set."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        hint = hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        kw: dict[str, typing.Any] = {"default": argparse.SUPPRESS, "dest": f.name,
                                     "help": f"{helps.get(f.name, '')} (default: {default})"}
        if hint is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(hint) is typing.Literal:
            p.add_argument(flag, choices=typing.get_args(hint), **kw)
        else:
            p.add_argument(flag, type=hint, metavar=f.name.upper(), **kw)
