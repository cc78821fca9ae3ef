"""core.runtime: device and precision choices."""

from __future__ import annotations

import warnings

import pytest
import torch

from ccyclegan.core import runtime
from ccyclegan.core.config import ConfigError

CPU = torch.device("cpu")


def test_auto_is_fp32_on_cpu():
    assert runtime.resolve_precision("auto", CPU) is None


def test_fp16_needs_cuda():
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        runtime.resolve_precision("fp16", CPU)


def test_bf16_warns_where_the_cpu_emulates_it(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16.*--precision fp32"):
        assert runtime.resolve_precision("bf16", CPU) is torch.bfloat16


def test_bf16_silent_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime.resolve_precision("bf16", CPU) is torch.bfloat16
