"""Emotion classifiers: the judges of evaluation and the frozen loss of training (their
networks, training and files). Stands on core only."""

from ccyclegan.classifier.nets import (
    accuracy_report,
    classify,
    export_classifier,
    features,
    load_classifier,
    predict,
)
from ccyclegan.classifier.train import train_classifier

__all__ = ["accuracy_report", "classify", "export_classifier", "features", "load_classifier",
           "predict", "train_classifier"]
