"""``ifan demo``: deblur the bundled example (or any photo) and write a comparison figure.

The figure: blurry | deblurred | estimated defocus map, then a crop at 100 % (actual pixels) of
the blurry and deblurred images (and of a sharp reference when one is given).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ifan.figures import captioned_row, stack_rows
from ifan.io import read_image, write_image, write_like

EXAMPLE = "china_defocus.png"


def example_path() -> Path:
    """The bundled example image: a photograph with synthetic defocus (see examples/README.md)."""
    return Path(str(resources.files("ifan") / "examples" / EXAMPLE))


def most_defocused_box(defocus: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left of the ``size`` x ``size`` window with the largest mean |defocus| (where deblurring shows)."""
    h, w = defocus.shape
    size = min(size, h, w)
    mag = np.abs(defocus).astype(np.float64)
    integral = np.pad(mag.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x)


def comparison_figure(blurry: np.ndarray, deblurred: np.ndarray, defocus_rgb: np.ndarray,
                      crop_box: tuple[int, int, int], sharp: np.ndarray | None = None) -> np.ndarray:
    """Rows: [blurry | deblurred | defocus map] and [100 % crops]; all ``(H, W, 3)`` float in [0, 1].

    ``crop_box`` is ``(top, left, size)``.
    """
    top, left, size = crop_box
    window = (slice(top, top + size), slice(left, left + size))
    crops = [("blurry (100% crop)", blurry[window]), ("deblurred (100% crop)", deblurred[window])]
    if sharp is not None:
        crops.append(("sharp reference (100% crop)", sharp[window]))
    first = captioned_row([("blurry input", blurry), ("deblurred", deblurred), ("estimated defocus", defocus_rgb)])
    return stack_rows([first, captioned_row(crops)])


@dataclass
class DemoResult:
    out_dir: Path
    figure: Path
    seconds: float
    model: str


def run_demo(out_dir: str | os.PathLike = "outputs/demo", model: str | None = None,
             image: str | os.PathLike | None = None, sharp: str | os.PathLike | None = None,
             device: str = "auto", crop: int = 192) -> DemoResult:
    """Deblur ``image`` (default: the bundled example) and write ``input.png``, ``deblurred.png``,
    ``defocus.png`` and ``figure.png`` into ``out_dir``."""
    import time

    from ifan.inference import Deblurrer, colorize_defocus
    from ifan.models.zoo import DEFAULT_MODEL

    model = model or DEFAULT_MODEL
    src = Path(image) if image is not None else example_path()
    img = read_image(src)
    deblurrer = Deblurrer.from_pretrained(model, device=device)
    t0 = time.perf_counter()
    deblurred, defocus = deblurrer.deblur(img.rgb, return_defocus=True)
    seconds = time.perf_counter() - t0
    out = Path(out_dir)
    write_like(out / "input.png", img.rgb, img)
    write_like(out / "deblurred.png", deblurred, img)
    defocus_rgb, _ = colorize_defocus(defocus)
    write_image(out / "defocus.png", defocus_rgb)
    ref = read_image(sharp).rgb if sharp is not None else None
    size = min(crop, *img.rgb.shape[:2])
    box = (*most_defocused_box(defocus, size), size)
    figure = write_image(out / "figure.png", comparison_figure(img.rgb, deblurred, defocus_rgb, box, ref))
    return DemoResult(out, figure, seconds, model)
