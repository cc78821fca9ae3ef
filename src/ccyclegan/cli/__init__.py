"""The `ccyclegan` command: one verb per job (train, translate, export, serve, evaluate,
train-classifier, sweep)."""

from ccyclegan.cli.commands import main

__all__ = ["main"]
