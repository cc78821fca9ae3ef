"""Measuring generators: 48x48 metrics and their report, the same person, FID, photos as users
get them, and the hyper-parameter sweep. Stands on every layer below the command line."""

from ccyclegan.evaluate.run import evaluate

__all__ = ["evaluate"]
