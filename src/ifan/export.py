"""ONNX export of IFAN (optional extra: ``pip install 'ifan[onnx]'``).

The exported graph takes ``blurry`` ``(B, 3, H, W)`` float32 in [0, 1] with ``H`` and ``W``
multiples of 8 (both dynamic) and returns ``deblurred`` ``(B, 3, H, W)`` (not clipped) and
``disparity`` ``(B, 1, H/8, W/8)``: the lean inference path (filter head applied per IAC
iteration), exported with PyTorch's TorchScript-based exporter (``dynamo=False``). Padding to
a multiple of 8 and tiling stay on the caller's side (:class:`ifan.inference.Deblurrer` does
both for PyTorch).

After writing, the file is checked with onnx's checker and run in onnxruntime on a random
input of another size than the one traced; the report gives the largest difference from
PyTorch and the PSNR between the two outputs.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ifan.evaluate.metrics import psnr
from ifan.fileutil import atomic_write
from ifan.models.ifan import DOWNSCALE, IFAN

ONNX_EXTRA = "ONNX export needs the optional extra: pip install 'ifan[onnx]' (onnx and onnxruntime)"


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{ONNX_EXTRA}; missing: {module}") from err


class ExportWrapper(nn.Module):
    """``image -> (deblurred, disparity)``: IFAN's dataclass output as a tuple, for exporters."""

    def __init__(self, model: IFAN) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(image)
        return out.image, out.disparity


@dataclass
class ExportReport:
    """What :func:`export_onnx` did.

    Attributes:
        path: the ONNX file.
        traced_size: ``(H, W)`` of the tracing input.
        checked_size: ``(H, W)`` of the parity check input (None: not checked).
        max_abs_diff: largest |onnxruntime - PyTorch| over the deblurred image.
        max_abs_diff_disparity: the same for the disparity.
        psnr: PSNR (dB, peak 1) between the two deblurred images (the lowest of the batch).
        tolerance: the largest image difference accepted.
    """

    path: Path
    traced_size: tuple[int, int]
    checked_size: tuple[int, int] | None = None
    max_abs_diff: float | None = None
    max_abs_diff_disparity: float | None = None
    psnr: float | None = None
    tolerance: float = 1e-3

    @property
    def ok(self) -> bool:
        return self.max_abs_diff is None or self.max_abs_diff <= self.tolerance

    def __str__(self) -> str:
        size = self.path.stat().st_size / 2**20 if self.path.exists() else 0.0
        text = f"wrote {self.path} ({size:.1f} MiB), traced at {self.traced_size[1]}x{self.traced_size[0]}"
        if self.checked_size is None:
            return text + "; parity not checked"
        verdict = "OK" if self.ok else f"FAILED (tolerance {self.tolerance:g})"
        return (f"{text}; onnxruntime vs PyTorch at {self.checked_size[1]}x{self.checked_size[0]}: max |diff| "
                f"{self.max_abs_diff:.2e} (image), {self.max_abs_diff_disparity:.2e} (disparity), "
                f"PSNR {self.psnr:.1f} dB: {verdict}")


def check_onnx(path: str | os.PathLike, model: IFAN, image: Tensor, tolerance: float = 1e-3) -> ExportReport:
    """Run ``path`` in onnxruntime (CPU) on ``image`` and compare with ``model`` in PyTorch float32."""
    ort = _require("onnxruntime")
    model = model.eval()
    with torch.no_grad():
        ref = ExportWrapper(model)(image)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"blurry": image.numpy()})
    diff = float((torch.from_numpy(got[0]) - ref[0]).abs().max())
    diff_d = float((torch.from_numpy(got[1]) - ref[1]).abs().max())
    worst = float(psnr(torch.from_numpy(got[0]).clamp(0, 1), ref[0].clamp(0, 1)).min())
    return ExportReport(Path(path), (0, 0), tuple(image.shape[-2:]), diff, diff_d, worst, tolerance)


def export_onnx(model: IFAN | str | os.PathLike, path: str | os.PathLike, height: int = 256, width: int = 256,
                opset: int = 17, check: bool = True, tolerance: float = 1e-3) -> ExportReport:
    """Export ``model`` (an IFAN, a model name with weights, or a weights file) to ONNX.

    Args:
        height, width: size of the tracing input (multiples of 8); the graph accepts any
            multiple of 8 (dynamic axes).
        opset: ONNX opset.
        check: verify with onnx's checker and onnxruntime against PyTorch (on a size other
            than the traced one, to exercise the dynamic axes).
        tolerance: the largest image difference the check accepts.

    Raises:
        ImportError: onnx (or onnxruntime, for the check) is not installed.
        ValueError: sizes not multiples of 8, or the dual-pixel variant (two more inputs).
    """
    onnx = _require("onnx")
    if check:
        _require("onnxruntime")
    if height % DOWNSCALE or width % DOWNSCALE or height < DOWNSCALE or width < DOWNSCALE:
        raise ValueError(f"height and width must be positive multiples of {DOWNSCALE}, got {height}x{width}")
    if not isinstance(model, IFAN):
        from ifan.models.hub import load_model

        model = load_model(model, device="cpu")
    if model.config.dual_pixel_input:
        raise ValueError("exporting the dual-pixel variant is not supported")
    model = model.eval().float().to("cpu")
    wrapper = ExportWrapper(model)
    example = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))

    def write(f) -> None:
        graph = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about the shape checks
            torch.onnx.export(
                wrapper, (example,), graph, dynamo=False, opset_version=opset,
                input_names=["blurry"], output_names=["deblurred", "disparity"],
                dynamic_axes={"blurry": {0: "batch", 2: "height", 3: "width"},
                              "deblurred": {0: "batch", 2: "height", 3: "width"},
                              "disparity": {0: "batch", 2: "height_8", 3: "width_8"}},
            )
        onnx.checker.check_model(onnx.load_from_string(graph.getvalue()))
        f.write(graph.getvalue())

    path = atomic_write(path, write)
    report = ExportReport(path, (height, width), tolerance=tolerance)
    if check:
        probe = torch.rand(1, 3, height + DOWNSCALE, width + 2 * DOWNSCALE, generator=torch.Generator().manual_seed(1))
        checked = check_onnx(path, model, probe, tolerance)
        checked.traced_size = (height, width)
        report = checked
    return report
