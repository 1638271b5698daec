"""``ifan demo``: deblur the bundled example (or any photo) and write a comparison figure.

The photo goes through the file loop of ``ifan deblur`` (:func:`ifan.apps.pipeline.deblur_file`),
which writes ``NAME_deblurred.png`` and ``NAME_defocus.png``; the figure
(:func:`ifan.viz.comparison_figure`: blurry | deblurred | estimated defocus map, then a crop at
100 % of the blurry and deblurred images, and of a sharp reference when one is given) is drawn
from the arrays it hands back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ifan.apps.files import InputFile, OutputOptions
from ifan.apps.pipeline import deblur_file
from ifan.apps.steps import Listener
from ifan.examples import example_path
from ifan.inference import DEFAULT_PRECISION, Deblurrer
from ifan.io import Image, read_image, write_image
from ifan.models.zoo import DEFAULT_MODEL
from ifan.viz import colorize_defocus, comparison_figure, most_defocused_box


@dataclass
class DemoResult:
    """What :func:`run_demo` wrote (the deblurred image, its defocus map, the figure) and how long deblurring took."""

    out_dir: Path
    output: Path
    defocus: Path
    figure: Path
    seconds: float
    model: str


class _Figure(Listener):
    """Draws the comparison figure from the arrays the file loop hands back."""

    def __init__(self, path: Path, sharp: np.ndarray | None, crop: int) -> None:
        self.path, self.sharp, self.crop = path, sharp, crop

    def result(self, item: InputFile, image: Image, deblurred: np.ndarray, defocus: np.ndarray | None) -> None:
        size = min(self.crop, *image.size)
        box = (*most_defocused_box(defocus, size), size)
        defocus_rgb, _ = colorize_defocus(defocus)
        write_image(self.path, comparison_figure(image.rgb, deblurred, defocus_rgb, box, self.sharp))


def run_demo(out_dir: str | os.PathLike = "outputs/demo", model: str = DEFAULT_MODEL,
             image: str | os.PathLike | None = None, sharp: str | os.PathLike | None = None,
             device: str = "auto", precision: str = DEFAULT_PRECISION, crop: int = 192) -> DemoResult:
    """Deblur ``image`` (default: the bundled example) into ``out_dir``: ``NAME_deblurred.png``,
    ``NAME_defocus.png`` and ``figure.png`` (existing ones are replaced).

    Args:
        model: model name or weights file (default: the bundled model).
        sharp: a sharp reference of the same size, shown in the crop row.
        device, precision: as for :class:`ifan.Deblurrer`.
        crop: side of the 100 % crops.
    """
    src = Path(image) if image is not None else example_path()
    deblurrer = Deblurrer.from_pretrained(model, device=device, precision=precision)
    out = Path(out_dir)
    reference = read_image(sharp).rgb if sharp is not None else None
    options = OutputOptions(out_dir=out, fmt="png", defocus_map=True, overwrite=True)
    report = deblur_file(deblurrer, InputFile(src), options, listener=_Figure(out / "figure.png", reference, crop))
    if report.status != "done":
        raise report.error if report.error is not None else ValueError(report.message)
    output, defocus = report.outputs
    return DemoResult(out, output, defocus, out / "figure.png", report.seconds, model)
