"""The quality suite's image sets, made *without* ``ifan.synth``: other blur, other photos.

Training uses ``ifan.synth`` (layered thin-lens rendering with its own PSFs) on scikit-image's
photographs. To see whether a model learned defocus rather than that simulator, the sets here
are written independently (numpy and OpenCV only, no other part of ``ifan``) from photos that
training never sees; ``python -m benchmarks.bench_quality`` scores models on them.

* :func:`eval_photos`: sharp photos. ``examples/photos/china.jpg`` (scikit-learn's sample image),
  ``tower.jpg`` from Gradio's wheel (the ``demo`` extra), and four photos of Debian's
  ``lomiri-wallpapers-16.04`` package (``apt install lomiri-wallpapers-16.04``: Ubuntu's 2018
  wallpaper contest, CC BY 4.0; landscapes by Aitzol Berasategi and a fig by Trevor "Freespace"),
  downscaled (area) to 768 px on the long side, which makes them sharp to the pixel. The benchmarks
  refuse to run with photos missing (:func:`require_photos`; :func:`missing_photos` says which and
  where they come from) unless told ``--partial``; then the missing ones are skipped and the JSON
  lists those used. A blurred copy is scored against the photo itself, so the photos must be sharp
  everywhere: a model that rightly sharpens real defocus in a reference is otherwise scored as
  harming it. Suite 1 used a halved ``cheetah2.jpg`` (Gradio) as a sharp photo; its body is
  defocused, and most of the models' losses on the Gaussian set were them sharpening it
  (docs/training.md), so from suite 2 it is a real-defocus photo.
* :func:`srgb_disc_layers`: two-layer scenes, a photo crop as the background and a shape cut out
  of another photo in front, each blurred by a plain hard-edged disc *on sRGB values* (as simple
  defocus simulators do), the front layer sharp or blurred, composited with its blurred coverage.
* :func:`linear_gaussian_jpeg`: a whole photo under a smoothly varying Gaussian blur (a random
  depth ramp plus low-frequency variation) applied *in linear light*, then JPEG-compressed.
* :func:`real_defocus`: photos with real optical defocus, for the artefact measures, which need
  no ground truth: ``examples/photos/flower.jpg``, Gradio's ``groot.jpeg`` and ``cheetah2.jpg``, and
  four from Debian packages: dandelions (``lomiri-wallpapers-16.04``, Clemens Engelhardt, CC0) and
  three flower and insect close-ups of ``mate-backgrounds`` (GPL-2+), downscaled to 1024 px.

The Debian photos are for evaluation only: training (``ifan.synth``) never reads
``/usr/share/backgrounds``.

The photos of this repository (``examples/photos``) are found in a source checkout, beside ``src/``.
All sets are deterministic functions of their seed. Images are float32 ``(H, W, 3)`` sRGB in [0, 1].
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

#: The version of the sets: 2 made the cub real defocus and added the Debian photos (docs/training.md).
SUITE = 2
REPOSITORY = Path(__file__).resolve().parents[3]  # src/ifan/evaluate/suite.py -> the checkout


class SuitePhotosMissing(FileNotFoundError):
    """Photos of the suite are not installed here (the message names them and their sources)."""


@dataclass
class Sample:
    """One test image: the blurry input, the sharp target (None for real defocus), and facts about it."""

    name: str
    blurry: np.ndarray
    sharp: np.ndarray | None
    info: dict = field(default_factory=dict)


def _gradio_file(*parts: str) -> Path | None:
    spec = importlib.util.find_spec("gradio")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.joinpath(*parts)
    return path if path.is_file() else None


DEBIAN_BACKGROUNDS = Path("/usr/share/backgrounds")

#: Debian packages that install photos of the suite under :data:`DEBIAN_BACKGROUNDS`.
_DEBIAN_PACKAGES = ("lomiri-wallpapers-16.04", "mate-backgrounds")

#: name -> (where, path parts, long side in px or None to keep the size); where: ``repo`` (this
#: repository), ``gradio`` (Gradio's wheel) or one of :data:`_DEBIAN_PACKAGES`.
_EVAL_PHOTOS = {
    "china": ("repo", ("examples", "photos", "china.jpg"), None),
    "tower": ("gradio", ("media_assets", "images", "tower.jpg"), None),
    "aitzgorri": ("lomiri-wallpapers-16.04", ("aitzgorri_by_Aitzol_Berasategi.jpg",), 768),
    "picos": ("lomiri-wallpapers-16.04", ("picosdeeuropa_by_Aitzol_Berasategi.jpg",), 768),
    "creek": ("lomiri-wallpapers-16.04", ("life_by_Aitzol_Berasategi.jpg",), 768),
    "fig": ("lomiri-wallpapers-16.04", ("Picture_0B_by_freespace.jpg",), 768),
}
_REAL_DEFOCUS = {
    "flower": ("repo", ("examples", "photos", "flower.jpg"), None),
    "groot": ("gradio", ("media_assets", "images", "groot.jpeg"), None),
    "cub": ("gradio", ("test_data", "cheetah2.jpg"), None),
    "dandelions": ("lomiri-wallpapers-16.04", ("seeding_by_Clements_Engelhardt.jpg",), 1024),
    "ladybird": ("mate-backgrounds", ("mate", "nature", "LadyBird.jpg"), 1024),
    "marigold": ("mate-backgrounds", ("mate", "nature", "Garden.jpg"), 1024),
    "seeds": ("mate-backgrounds", ("mate", "nature", "TwoWings.jpg"), 1024),
}


def _locate(where: str, parts: tuple[str, ...]) -> Path | None:
    if where == "gradio":
        return _gradio_file(*parts)
    if where not in ("repo", *_DEBIAN_PACKAGES):
        raise ValueError(f"unknown source {where!r} of a suite photo")
    path = (REPOSITORY if where == "repo" else DEBIAN_BACKGROUNDS).joinpath(*parts)
    return path if path.is_file() else None


def _provider(where: str) -> str:
    if where == "gradio":
        return "Gradio's wheel: pip install 'ifan[demo]'"
    if where == "repo":
        return "this repository's examples/photos"
    return f"Debian's {where}: apt install {where}"


def missing_photos() -> dict[str, str]:
    """The suite's photos (sharp and real-defocus) that cannot be found here: name -> where they come from."""
    return {name: _provider(where) for table in (_EVAL_PHOTOS, _REAL_DEFOCUS)
            for name, (where, parts, _) in table.items() if _locate(where, parts) is None}


def require_photos(partial: bool = False) -> None:
    """Check that every photo of the suite is here; with ``partial``, only warn about those missing
    (the numbers then do not compare with the suite's published ones).

    Raises:
        SuitePhotosMissing: photos are missing and ``partial`` is False.
    """
    missing = missing_photos()
    if not missing:
        return
    lines = "\n".join(f"  {name}: {source}" for name, source in sorted(missing.items()))
    if not partial:
        raise SuitePhotosMissing(f"{len(missing)} photo(s) of quality suite {SUITE} are missing here:\n{lines}\n"
                                 f"install them, or pass --partial to score on the rest (not comparable with "
                                 f"published numbers)")
    warnings.warn(f"scoring without {len(missing)} photo(s) of suite {SUITE}:\n{lines}", stacklevel=2)


def _paths(table: dict) -> dict[str, Path]:
    found = {name: _locate(where, parts) for name, (where, parts, _) in table.items()}
    return {name: path for name, path in found.items() if path is not None}


def _read(table: dict, name: str, path: Path) -> np.ndarray:
    image, long_side = read_srgb(path), table[name][2]
    h, w = image.shape[:2]
    if long_side is not None and max(h, w) > long_side:
        s = long_side / max(h, w)
        image = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return image


def eval_photo_paths() -> dict[str, Path]:
    """The sharp photos the sets are made from, by name; missing ones left out."""
    return _paths(_EVAL_PHOTOS)


def eval_photos() -> dict[str, np.ndarray]:
    """The sharp evaluation photos, float32 sRGB, downscaled where the table says."""
    return {name: _read(_EVAL_PHOTOS, name, path) for name, path in eval_photo_paths().items()}


def real_defocus_paths() -> dict[str, Path]:
    """The real defocused photos, by name; missing ones left out."""
    return _paths(_REAL_DEFOCUS)


def read_srgb(path: Path) -> np.ndarray:
    """An image file as float32 ``(H, W, 3)`` sRGB in [0, 1]."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read {path}")
    return np.ascontiguousarray(bgr[..., ::-1], dtype=np.float32) / np.float32(255.0)


def to_linear(srgb: np.ndarray) -> np.ndarray:
    s = np.clip(srgb, 0.0, 1.0)
    return np.where(s <= 0.04045, s / 12.92, ((s + 0.055) / 1.055) ** 2.4).astype(np.float32)


def to_srgb(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055).astype(np.float32)


def disc_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """A hard-edged uniform disc of ``radius`` px, area-sampled (``supersample``^2 points per pixel), sum 1."""
    if radius < 0.5:
        return np.ones((1, 1), np.float32)
    half = int(math.ceil(radius))
    n = (2 * half + 1) * supersample
    c = (np.arange(n) + 0.5) / supersample - (half + 0.5)
    inside = (c[None, :] ** 2 + c[:, None] ** 2 <= radius ** 2).astype(np.float64)
    k = inside.reshape(2 * half + 1, supersample, 2 * half + 1, supersample).sum(axis=(1, 3))
    return (k / k.sum()).astype(np.float32)


def _filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def _random_crop(rng: np.random.Generator, img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    if min(h, w) < size:
        s = size / min(h, w)
        img = cv2.resize(img, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_CUBIC)
        h, w = img.shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return np.ascontiguousarray(img[y:y + size, x:x + size])


def _random_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """Anti-aliased coverage of a random ellipse or polygon covering 15-45 % of a square."""
    s = 4
    canvas = np.zeros((size * s, size * s), np.uint8)
    cx, cy = rng.uniform(0.3, 0.7, 2) * size * s
    if rng.random() < 0.5:
        axes = (int(rng.uniform(0.2, 0.4) * size * s), int(rng.uniform(0.2, 0.45) * size * s))
        cv2.ellipse(canvas, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    else:
        k = int(rng.integers(4, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, k))
        radii = rng.uniform(0.2, 0.45, k) * size * s
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1).astype(np.int32)
        cv2.fillPoly(canvas, [pts], 255)
    return cv2.resize(canvas.astype(np.float32) / 255.0, (size, size), interpolation=cv2.INTER_AREA)


def srgb_disc_layers(photos: dict[str, np.ndarray], count: int = 24, size: int = 320, seed: int = 0) -> list[Sample]:
    """Two-layer scenes blurred by plain discs on sRGB values (see the module docstring).

    The background's disc radius is 3 to 12 px; the front layer is sharp (half the samples) or
    blurred by 2 to 8 px; the front is composited over the back with its blurred coverage.
    """
    rng = np.random.default_rng(seed)
    names = sorted(photos)
    out = []
    for i in range(count):
        back_name, front_name = rng.choice(names, 2)
        back = _random_crop(rng, photos[str(back_name)], size)
        front = _random_crop(rng, photos[str(front_name)], size)
        alpha = _random_mask(rng, size)[..., None]
        r_back = float(rng.uniform(3.0, 12.0))
        r_front = 0.0 if rng.random() < 0.5 else float(rng.uniform(2.0, 8.0))
        kb, kf = disc_kernel(r_back), disc_kernel(r_front)
        cover = _filter(alpha[..., 0], kf)[..., None]
        blurry = _filter(back, kb) * (1.0 - cover) + _filter(front * alpha, kf)
        sharp = back * (1.0 - alpha) + front * alpha
        out.append(Sample(f"srgb_disc_{i:02d}", np.clip(blurry, 0, 1).astype(np.float32), sharp.astype(np.float32),
                          {"max_radius": max(r_back, r_front), "back_radius": r_back, "front_radius": r_front,
                           "photos": [str(back_name), str(front_name)]}))
    return out


def _smooth_field(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random smooth field in [0, 1]: a tilted ramp plus low-frequency noise."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = (xx * math.cos(theta) + yy * math.sin(theta))
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    noise = cv2.resize(rng.random((4, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    f = 0.7 * ramp + 0.3 * noise
    return ((f - f.min()) / max(float(np.ptp(f)), 1e-6)).astype(np.float32)


def linear_gaussian_jpeg(photos: dict[str, np.ndarray], count: int = 24, size: int = 320,
                         seed: int = 1) -> list[Sample]:
    """Spatially varying Gaussian blur in linear light, then JPEG (see the module docstring).

    The blur's standard deviation varies smoothly from 0 to 1.5-5 px (a 'radius' of about twice
    that); per pixel it interpolates linearly between a stack of uniformly blurred images. JPEG
    quality 70 to 92.
    """
    rng = np.random.default_rng(seed)
    names = sorted(photos)
    out = []
    for i in range(count):
        name = str(rng.choice(names))
        sharp = _random_crop(rng, photos[name], size)
        lin = to_linear(sharp)
        sigma_max = float(rng.uniform(1.5, 5.0))
        sigma = _smooth_field(rng, size, size) * sigma_max
        levels = np.linspace(0.0, sigma_max, 9)
        stack = [lin if s == 0 else cv2.GaussianBlur(lin, (0, 0), s, borderType=cv2.BORDER_REFLECT_101)
                 for s in levels]
        pos = sigma / (levels[1] - levels[0])
        lo = np.clip(np.floor(pos).astype(int), 0, len(levels) - 2)
        t = (pos - lo)[..., None]
        blurred = np.zeros_like(lin)
        for j in range(len(levels) - 1):
            m = (lo == j)[..., None]
            blurred += m * (stack[j] * (1 - t) + stack[j + 1] * t)
        quality = int(rng.integers(70, 93))
        u8 = np.round(to_srgb(blurred) * 255).astype(np.uint8)
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(u8[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        blurry = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0
        out.append(Sample(f"lin_gauss_{i:02d}", np.ascontiguousarray(blurry), sharp,
                          {"max_radius": 2.0 * sigma_max, "max_sigma": sigma_max, "jpeg_quality": quality,
                           "photo": name}))
    return out


def sharp_photos(photos: dict[str, np.ndarray]) -> list[Sample]:
    """The evaluation photos as they are (no added blur): what a model must leave alone."""
    return [Sample(f"sharp_{name}", img, img) for name, img in sorted(photos.items())]


def real_defocus() -> list[Sample]:
    """Photos with real optical defocus (no ground truth), downscaled where the table says."""
    return [Sample(f"real_{name}", _read(_REAL_DEFOCUS, name, path), None)
            for name, path in real_defocus_paths().items()]
