"""The device and precision policy shared by inference, evaluation and training."""

from __future__ import annotations

import pytest
import torch

from ifan.inference.runtime import check_device_name, resolve_precision


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


def test_auto_is_the_default_and_resolves_per_device(monkeypatch):
    from ifan import Deblurrer, create_model

    monkeypatch.setattr("ifan.inference.runtime.cpu_has_native_bf16", lambda: True)
    deblurrer = Deblurrer(create_model("ifan", channels=2, iterations=2), device="cpu")
    assert deblurrer.precision == "auto" and deblurrer.autocast_dtype is torch.bfloat16
    assert "precision=auto (torch.bfloat16 autocast)" in deblurrer.describe()


def test_device_names():
    for name in ("auto", "cpu", "cuda", "cuda:1"):
        assert check_device_name(name) == name
    for bad in ("gpu", "cuda:", "CPU", "mps"):
        with pytest.raises(ValueError, match="auto \\(CUDA if available\\), cpu, cuda or cuda:N"):
            check_device_name(bad)
