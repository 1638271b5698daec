"""The device and precision policy shared by inference, evaluation and training."""

from __future__ import annotations

import pytest
import torch

from ifan.inference.runtime import resolve_precision


def test_precision_policy(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8", cpu)
    monkeypatch.setattr("ifan.inference.runtime.cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) is None  # no bf16 where the CPU would emulate it
    with pytest.warns(RuntimeWarning, match="emulated"):
        assert resolve_precision("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr("ifan.inference.runtime.cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) is torch.bfloat16
    assert resolve_precision("auto", torch.device("cuda")) is torch.float16
