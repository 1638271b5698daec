"""``ifan demo``: deblur the bundled example (or any photo) and write a comparison figure.

The figure: blurry | deblurred | estimated defocus map, then a crop at 100 % (actual pixels) of
the blurry and deblurred images (and of a sharp reference when one is given).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ifan.io import read_image, write_image, write_like
from ifan.viz import colorize_defocus, comparison_figure, most_defocused_box

EXAMPLE = "china_defocus.png"


def example_path() -> Path:
    """The bundled example image: a photograph with synthetic defocus (see examples/README.md)."""
    return Path(str(resources.files("ifan") / "examples" / EXAMPLE))


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

    from ifan.inference import Deblurrer
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
