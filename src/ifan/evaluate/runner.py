"""``ifan evaluate``: score a model (and baselines) on a dataset under a stated protocol.

The network runs through the one inference path, :class:`ifan.inference.Deblurrer` (images too
large for the memory budget are tiled; ``--max-memory`` sets it), in strict float32 unless
``--precision`` says otherwise: the official protocol's numbers are float32 numbers.

Protocols (see :mod:`ifan.evaluate.metrics`):

* ``official`` reproduces the authors' evaluation: input, views and target cropped (top-left)
  to a multiple of 8, the whole image through the network, the output clipped to [0, 1] and
  scored in float (not quantised); PSNR (data range 1), SSIM as scikit-image's 7x7 uniform
  window, MAE over the three channels; PixelDP rotated 90 degrees counter-clockwise before the
  network and the output rotated back.
* ``full`` scores the full-size output: the input is reflection-padded to a multiple of 8
  and the output cropped back to the input's size.

Outputs (``--out DIR``)::

    DIR/per_image.csv        method, name, psnr, ssim, mae, lpips, seconds
    DIR/summary.json         means per method + device, protocol, model, bit depth, dataset
    DIR/summary.md           the same as a markdown table
    DIR/outputs/METHOD/NAME.png   every output, at the dataset's bit depth
    DIR/outputs/METHOD/NAME.npy   with --save-float: the float32 HWC image exactly as scored
    DIR/figures/NAME.png     input | output | target | defocus map  (with --figures)
"""

from __future__ import annotations

import csv
import io as _stdio
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ifan.data.datasets import LAYOUTS, VIEWS, DefocusDataset, open_dataset
from ifan.evaluate.baselines import BASELINES, get_baseline
from ifan.evaluate.lpips import load_lpips_or_none
from ifan.evaluate.metrics import crop_hw, get_protocol, score_image
from ifan.evaluate.summary import format_score, json_score, summarize
from ifan.fileutil import atomic_write_bytes
from ifan.inference import Deblurrer
from ifan.inference.runtime import describe_cpu, describe_precision
from ifan.io import write_image
from ifan.models.hub import load_model
from ifan.viz import captioned_row, colorize_defocus

# The official protocol scores float32 outputs: evaluation keeps fp32 unless told otherwise (ifan deblur uses "auto").
EVALUATE_PRECISION = "fp32"


@dataclass
class EvalResult:
    """Per-image rows and the summary of one evaluation."""

    rows: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy().transpose(1, 2, 0)


def _unrotate(img: np.ndarray, rotated: bool) -> np.ndarray:
    """Undo the PixelDP rotation (the dataset rotated 90 degrees counter-clockwise)."""
    return np.ascontiguousarray(np.rot90(img, -1)) if rotated else img


def evaluate(
    model: str,
    dataset: str,
    root: str | Path,
    protocol: str = "official",
    out_dir: str | Path | None = None,
    baselines: bool = False,
    figures: bool = False,
    device: str = "cpu",
    lpips_weights: str | None = None,
    limit: int | None = None,
    split: str = "test",
    progress: bool = True,
    save_float: bool = False,
    precision: str = EVALUATE_PRECISION,
    max_memory: int | str | None = None,
) -> EvalResult:
    """Evaluate ``model`` (a name with bundled weights or a weights file) on a dataset.

    Args:
        model: model name or weights path (see :func:`ifan.models.hub.load_model`).
        dataset: ``DPDD``, ``RealDOF``, ``CUHK``, ``PixelDP`` or ``folder`` (any case).
        root: the dataset folder.
        protocol: ``official`` or ``full``.
        out_dir: where to write the CSV, summaries, outputs and figures (None: nothing written).
        baselines: also score the input itself and the Wiener baseline.
        figures: write input | output | target | defocus-map figures.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        lpips_weights: LPIPS weights (else ``IFAN_LPIPS_WEIGHTS``; without them LPIPS is empty).
        limit: evaluate only the first N images.
        split: the DPDD split (``test`` by default).
        save_float: also save each output as float32 ``.npy``, exactly as it was scored.
        precision: ``fp32`` (default: the official protocol's float32) or another precision of
            :mod:`ifan.inference.runtime`.
        max_memory: peak memory of a run (bytes or ``"4G"``); larger images are tiled (default:
            the default budget of :class:`~ifan.inference.Deblurrer`, as for ``ifan deblur``).
    """
    proto = get_protocol(protocol)
    kind = dataset.lower()
    if kind not in LAYOUTS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(LAYOUTS)} (any case)")
    deblurrer = Deblurrer(load_model(model), device=device, precision=precision, max_memory=max_memory)
    net = deblurrer.model
    dual = net.config.dual_pixel_input
    data: DefocusDataset = open_dataset(kind, root, split=split)
    if dual and "l" not in data[0]:
        raise ValueError(f"{model} reads the dual-pixel views, which the {dataset} dataset does not have")
    lpips, lpips_note = load_lpips_or_none(lpips_weights, device=deblurrer.device)
    out = Path(out_dir) if out_dir is not None else None
    methods = ["ifan"] + (list(BASELINES) if baselines else [])

    result = EvalResult()
    bit_depth = 8
    count = len(data) if limit is None else min(limit, len(data))
    iterator = range(count)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=f"evaluate {dataset}", unit="img")
    for i in iterator:
        item = data[i]
        bit_depth = max(bit_depth, item["bit_depth"])
        views = {k: item[k][None] for k in VIEWS if k in item}
        crop = proto.crop_multiple is not None
        if crop:
            views = {k: crop_hw(v, proto.crop_multiple, "CHW") for k, v in views.items()}
        t0 = time.perf_counter()
        res = deblurrer.run(views["c"], defocus=figures and out is not None,
                            right=views.get("r") if dual else None, left=views.get("l") if dual else None)
        if deblurrer.device.type == "cuda":
            torch.cuda.synchronize(deblurrer.device)
        seconds = time.perf_counter() - t0
        c_img = _hwc(views["c"][0])
        outputs = {"ifan": (proto.prepare_output(res.image[0]).clamp(0, 1), seconds)}
        for name in methods[1:]:
            t0 = time.perf_counter()
            restored = get_baseline(name)(c_img)
            outputs[name] = (torch.from_numpy(np.ascontiguousarray(restored)).permute(2, 0, 1),
                             time.perf_counter() - t0)
        target = _hwc(views["gt"][0]) if "gt" in views else None
        for method, (image, secs) in outputs.items():
            img = _hwc(image)
            row = {"method": method, "name": item["name"], "seconds": secs,
                   "psnr": None, "ssim": None, "mae": None, "lpips": None}
            if target is not None:
                row.update(score_image(img, target, proto, lpips))
            result.rows.append(row)
            if out is not None:
                write_image(out / "outputs" / method / f"{item['name']}.png",
                            _unrotate(img, item["rotated"]), bit_depth=item["bit_depth"])
                if save_float:
                    buf = _stdio.BytesIO()
                    np.save(buf, img.astype(np.float32))
                    atomic_write_bytes(out / "outputs" / method / f"{item['name']}.npy", buf.getvalue())
        if out is not None and figures:
            defocus_rgb, _ = colorize_defocus(res.defocus[0, 0].numpy())
            panels = [("input", c_img), ("ifan", _hwc(outputs["ifan"][0]))]
            if target is not None:
                panels.append(("target", target))
            panels.append(("defocus map", defocus_rgb))
            fig = captioned_row([(label, _unrotate(p, item["rotated"])) for label, p in panels])
            write_image(out / "figures" / f"{item['name']}.png", fig)

    result.summary = _summarize(result.rows, methods, model, deblurrer, dataset, root, proto.name, bit_depth,
                                lpips_note, count)
    if out is not None:
        _write_reports(out, result)
    return result


def _summarize(rows, methods, model, deblurrer, dataset, root, protocol, bit_depth, lpips_note, count) -> dict:
    per_method = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        stats = summarize(mine)
        per_method[method] = {
            **{k: json_score(v["mean"]) for k, v in stats.items()},
            "seconds": sum(r["seconds"] for r in mine) / max(len(mine), 1),
            "images": len(mine),
            "infinite_psnr": stats["psnr"]["infinite"],
        }
    return {
        "methods": per_method,
        "model": model,
        "model_config": deblurrer.config.to_dict(),
        "model_source": getattr(deblurrer.model, "weights_metadata", {}).get("source", ""),
        "dataset": dataset,
        "root": str(root),
        "protocol": protocol,
        "device": str(deblurrer.device) + (f" ({describe_cpu()})" if deblurrer.device.type == "cpu" else ""),
        "precision": describe_precision(deblurrer.precision, deblurrer.autocast_dtype),
        "bit_depth": bit_depth,
        "images": count,
        "lpips_note": lpips_note,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def markdown_table(summary: dict) -> str:
    """The summary as a markdown table (mean PSNR, SSIM, MAE, LPIPS, seconds per image)."""
    lines = ["| method | PSNR (dB) | SSIM | MAE | LPIPS | s / image |", "|---|---|---|---|---|---|"]
    for method, m in summary["methods"].items():
        cells = [format_score(_num(m.get(k)), d) for k, d in (("psnr", 2), ("ssim", 4), ("mae", 4), ("lpips", 4))]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {m['seconds']:.3f} |")
    return "\n".join(lines)


def _num(v):
    if isinstance(v, str):
        return math.inf if v == "inf" else -math.inf
    return v


def _write_reports(out: Path, result: EvalResult) -> None:
    buf = _stdio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["method", "name", "psnr", "ssim", "mae", "lpips", "seconds"])
    writer.writeheader()
    for r in result.rows:
        writer.writerow({**r, **{k: format_score(r[k], 6) for k in ("psnr", "ssim", "mae", "lpips")},
                         "seconds": f"{r['seconds']:.4f}"})
    atomic_write_bytes(out / "per_image.csv", buf.getvalue().encode())
    atomic_write_bytes(out / "summary.json", json.dumps(result.summary, indent=2).encode())
    s = result.summary
    text = [f"# Evaluation: {s['model']} on {s['dataset']}", "",
            f"- protocol: `{s['protocol']}`; images: {s['images']}; bit depth: {s['bit_depth']}",
            f"- device: {s['device']}; torch {s['torch']}; {s['date']}",
            f"- precision: {s['precision']}" + ("" if s["precision"].startswith("fp32") else
                                                 " (not the official protocol's float32)"), ""]
    text.append(markdown_table(s))
    if s["lpips_note"]:
        text += ["", f"LPIPS: {s['lpips_note']}"]
    atomic_write_bytes(out / "summary.md", ("\n".join(text) + "\n").encode())
