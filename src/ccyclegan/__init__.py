"""ccyclegan: change the facial expression of a face to a chosen emotion (CCycleGAN)."""

from ccyclegan.core.config import Config
from ccyclegan.core.data import EMOTIONS

__all__ = ["Config", "EMOTIONS", "ExpressionTranslator", "__version__"]
__version__ = "0.1.0"

_LAZY = {"ExpressionTranslator": "ccyclegan.translate.api"}  # imported on first use: stays light


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ccyclegan' has no attribute {name!r}")
