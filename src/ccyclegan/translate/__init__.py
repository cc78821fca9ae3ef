"""Changing the expression in photos: the API, its generator backends (PyTorch, onnxruntime),
faces in photos, files, export and the web page. Stands on core."""

from ccyclegan.translate.api import ExpressionTranslator, TranslationResult
from ccyclegan.translate.faces import NoFaceError, TranslateError

__all__ = ["ExpressionTranslator", "NoFaceError", "TranslateError", "TranslationResult"]
