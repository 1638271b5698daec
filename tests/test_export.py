"""ONNX export: parity with PyTorch in onnxruntime on a size other than the traced one, CLI, missing extra."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch

from ifan import create_model
from ifan.apps.cli import main
from ifan.models.serialization import save_weights

onnx = pytest.importorskip("onnx", reason="the optional extra ifan[onnx] (onnx) is not installed")
ort = pytest.importorskip("onnxruntime", reason="the optional extra ifan[onnx] (onnxruntime) is not installed")

from ifan.export import ExportWrapper, export_onnx  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("ifan", channels=2, iterations=2).eval()


@pytest.mark.slow
@pytest.mark.parametrize("form", ["separable", "official"])
def test_export_matches_pytorch_at_another_size(tmp_path, form):
    torch.manual_seed(0)
    model = create_model("ifan", channels=2, iterations=2, iac_form=form).eval()
    report = export_onnx(model, tmp_path / "m.onnx", height=32, width=48)
    assert report.ok and report.checked_size == (40, 64) and report.traced_size == (32, 48)
    assert report.max_abs_diff < 1e-4 and report.psnr > 80
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 24, 16)  # batch and size both dynamic
    deblurred, disparity = session.run(None, {"blurry": x.numpy()})
    with torch.no_grad():
        ref_image, ref_disp = ExportWrapper(model)(x)
    np.testing.assert_allclose(deblurred, ref_image.numpy(), atol=1e-4)
    assert disparity.shape == (2, 1, 3, 2)
    np.testing.assert_allclose(disparity, ref_disp.numpy(), atol=1e-4)


@pytest.mark.slow
def test_cli_export_from_a_weights_file(tmp_path, tiny, capsys):
    weights = save_weights(tmp_path / "tiny.safetensors", tiny.config, tiny.state_dict())
    code = main(["export", str(weights), "--onnx", str(tmp_path / "out.onnx"), "--height", "32", "--width", "32"])
    out = capsys.readouterr().out
    assert code == 0 and "OK" in out and "PSNR" in out and (tmp_path / "out.onnx").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # written atomically
    code = main(["export", str(tmp_path / "missing.safetensors"), "--onnx", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 1 and "missing.safetensors" in err and not (tmp_path / "x.onnx").exists()
    code = main(["export", str(weights), "--onnx", str(tmp_path / "y.onnx"), "--height", "30"])
    assert code == 1 and "multiples of 8" in capsys.readouterr().err


def test_missing_extra_is_a_clear_message(tmp_path, tiny, monkeypatch, capsys):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] in ("onnx", "onnxruntime"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr("importlib.import_module", lambda name: fake_import(name))
    with pytest.raises(ImportError, match=r"pip install 'ifan\[onnx\]'"):
        export_onnx(tiny, tmp_path / "m.onnx")
    weights = save_weights(tmp_path / "tiny.safetensors", tiny.config, tiny.state_dict())
    code = main(["export", str(weights), "--onnx", str(tmp_path / "m.onnx")])
    assert code == 1 and "ifan[onnx]" in capsys.readouterr().err
