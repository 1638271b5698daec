"""What surfaces look like: photographs shipped offline, procedural textures, a real RGB-D pair.

* :data:`PHOTOS`: photographs inside scikit-image's wheel (licences listed), loaded as linear light;
* :func:`load_stereo_motorcycle`: Middlebury's Motorcycle (scikit-image's ``stereo_motorcycle``),
  a real photo with a real depth map from its ground-truth disparity;
* procedural textures with natural-image statistics: 1/f noise, stripes and checks
  (``_pattern``), dead leaves with scale-invariant discs (:func:`dead_leaves`), text
  (:func:`text_texture`);
* :func:`texture`: a random texture of either kind, recoloured, under a given warp.

The example photos of ifan (``examples/photos``) and the photos its quality benchmark uses
(Gradio's, ``examples/`` and Debian's wallpaper packages) are deliberately *not* here: they are
never trained on.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from ifan.synth.color import u8_srgb_to_linear

#: Texture mixtures (:func:`texture`): ifan 0.1's, or with more photographs and patterns.
CONTENTS = ("classic", "rich")


@dataclass(frozen=True)
class PhotoInfo:
    """A photograph shipped inside scikit-image (``skimage.data.<loader>()``); ``grey``: one channel."""

    loader: str
    licence: str
    source: str
    grey: bool = False
    part: int = 0  # which image of a loader that returns several (stereo_motorcycle: 0 left, 1 right)


#: Photographs used as textures (all load offline from the scikit-image wheel).
PHOTOS: dict[str, PhotoInfo] = {
    "astronaut": PhotoInfo("astronaut", "public domain", "NASA Great Images (Eileen Collins)"),
    "chelsea": PhotoInfo("chelsea", "CC0", "Stefan van der Walt"),
    "coffee": PhotoInfo("coffee", "CC0", "Rachel Michetti, courtesy of Pikolo Espresso Bar"),
    "rocket": PhotoInfo("rocket", "public domain", "SpaceX (DSCOVR launch)"),
    "hubble_deep_field": PhotoInfo("hubble_deep_field", "public domain", "NASA / HubbleSite"),
    "immunohistochemistry": PhotoInfo("immunohistochemistry", "no known copyright restrictions",
                                      "Center for Microscopy And Molecular Imaging"),
    "camera": PhotoInfo("camera", "CC0", "Lav Varshney", grey=True),
    "brick": PhotoInfo("brick", "CC0", "CC0Textures (Bricks25)", grey=True),
    "grass": PhotoInfo("grass", "CC0", "DeviantArt, linolafett (Grass 01)", grey=True),
    "gravel": PhotoInfo("gravel", "CC0", "CC0Textures (Gravel04)", grey=True),
    "coins": PhotoInfo("coins", "no known copyright restrictions", "Brooklyn Museum Collection", grey=True),
    "motorcycle": PhotoInfo("stereo_motorcycle", "Middlebury 2014 stereo data set (cite Scharstein et al., "
                            "GCPR 2014); no licence stated in scikit-image", "Middlebury College"),
    # added in ifan 0.2 (used by the "rich" content only, so "classic" datasets are unchanged)
    "motorcycle_right": PhotoInfo("stereo_motorcycle", "as motorcycle", "Middlebury College", part=1),
    "retina": PhotoInfo("retina", "CC BY 4.0", "Mikael Häggström (Wikimedia Commons)"),
    "moon": PhotoInfo("moon", "no known copyright restrictions", "scikit-image", grey=True),
    "page": PhotoInfo("page", "no known copyright restrictions", "scikit-image (a scanned page)", grey=True),
    "text": PhotoInfo("text", "CC0", "Andreas Mueller (a photo of text)", grey=True),
    "cell": PhotoInfo("cell", "CC0", "Stefan van der Walt (microscopy)", grey=True),
    "logo": PhotoInfo("logo", "scikit-image logo (BSD)", "scikit-image"),
}

#: The photographs of ifan 0.1 ("classic" content), in the order its draws used.
CLASSIC_PHOTOS = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel",
                  "hubble_deep_field", "immunohistochemistry", "motorcycle", "rocket")

# Middlebury 2014 "Motorcycle" calibration at scikit-image's 4x downsampled resolution (its docstring).
MOTORCYCLE_FOCAL_PX = 994.978
MOTORCYCLE_BASELINE_M = 0.193001
MOTORCYCLE_DOFFS_PX = 31.086


def skimage_data():
    try:
        import skimage.data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("ifan.synth needs scikit-image for its photo textures and its stereo scene: "
                          "pip install 'ifan[synth]'") from err
    return skimage.data


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """A photograph of :data:`PHOTOS` as ``(H, W, 3)`` float32 linear light (read-only, cached)."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; expected one of {sorted(PHOTOS)}")
    data = skimage_data()
    info = PHOTOS[name]
    image = getattr(data, info.loader)()
    if isinstance(image, tuple):
        image = image[info.part]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    out = u8_srgb_to_linear(image[..., :3])
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=1)
def load_stereo_motorcycle() -> tuple[np.ndarray, np.ndarray]:
    """The left view of Middlebury's Motorcycle and its depth map.

    Returns:
        ``(rgb, depth)``: ``(500, 741, 3)`` float32 linear light and ``(500, 741)`` float32 depth in
        metres, ``Z = f B / (d + doffs)`` from the ground-truth disparity ``d``. Pixels without
        ground truth (occlusions, mostly) take the farther of their nearest valid neighbours on
        the same row.
    """
    left, _, disp = skimage_data().stereo_motorcycle()
    disp = np.asarray(disp, dtype=np.float64)
    if disp.ndim == 3:
        disp = disp[..., 0]
    disp = _fill_rows_far(disp)
    depth = MOTORCYCLE_FOCAL_PX * MOTORCYCLE_BASELINE_M / (disp + MOTORCYCLE_DOFFS_PX)
    rgb = u8_srgb_to_linear(left)
    depth = depth.astype(np.float32)
    rgb.setflags(write=False)
    depth.setflags(write=False)
    return rgb, depth


def _fill_rows_far(disp: np.ndarray) -> np.ndarray:
    """Fill non-finite disparities with the smaller (farther) of the nearest valid ones left and right."""
    valid = np.isfinite(disp)
    h, w = disp.shape
    idx = np.where(valid, np.arange(w)[None, :], -1)
    left_idx = np.maximum.accumulate(idx, axis=1)
    idx_r = np.where(valid, np.arange(w)[None, :], w)
    right_idx = np.minimum.accumulate(idx_r[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(h)[:, None]
    big = np.nanmax(disp) + 1.0
    from_left = np.where(left_idx >= 0, disp[rows, np.clip(left_idx, 0, w - 1)], big)
    from_right = np.where(right_idx < w, disp[rows, np.clip(right_idx, 0, w - 1)], big)
    filled = np.where(valid, disp, np.minimum(from_left, from_right))
    if not np.all(np.isfinite(filled)) or np.any(filled >= big):
        filled = np.where(np.isfinite(filled) & (filled < big), filled, np.nanmedian(disp))
    return filled




def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))




def random_colour(rng: np.random.Generator, lo: float = 0.02, hi: float = 0.9) -> np.ndarray:
    """A random linear RGB colour with a log-uniform brightness."""
    hue = rng.dirichlet((1.0, 1.0, 1.0)) * 3.0
    sat = rng.uniform(0.0, 1.0)
    c = (1.0 - sat) + sat * hue
    return (c / c.max() * log_uniform(rng, lo, hi)).astype(np.float32)


def texture(rng: np.random.Generator, h: int, w: int, warp, content: str = "classic") -> np.ndarray:
    """A random ``(h, w, 3)`` float32 linear texture: a recoloured photograph or a procedural pattern.

    ``warp(src, h, w)`` maps a source image onto the ``h x w`` output (crop, rotation, scale or
    a plane's homography); colour changes are applied after it, to the pixels actually used.
    ``content``: ``"classic"`` (ifan 0.1: 75 % photographs of :data:`CLASSIC_PHOTOS`, 25 % 1/f
    noise, stripes and checks) or ``"rich"`` (55 % photographs of all :data:`PHOTOS`; 45 %
    patterns, of which 40 % the classic ones, 35 % dead leaves, 25 % text).
    """
    if content not in CONTENTS:
        raise ValueError(f"unknown content {content!r}; expected one of {CONTENTS}")
    photo_p = 0.75 if content == "classic" else 0.55
    if rng.random() >= photo_p:
        u = rng.random() if content == "rich" else 0.0
        make = _pattern if u < 0.4 else dead_leaves if u < 0.75 else text_texture
        return warp(make(rng, h, w), h, w)
    names = CLASSIC_PHOTOS if content == "classic" else tuple(sorted(PHOTOS))
    name = str(rng.choice(names))
    out = warp(load_photo(name), h, w)
    if PHOTOS[name].grey:
        c0, c1 = random_colour(rng, 0.005, 0.2), random_colour(rng, 0.2, 1.0)
        return (c0 + (c1 - c0) * out[..., :1]).astype(np.float32)
    gains = np.exp(rng.normal(0.0, 0.2, 3)).astype(np.float32) * np.float32(log_uniform(rng, 0.5, 1.4))
    grey = out.mean(axis=2, keepdims=True)
    out = grey + np.float32(rng.uniform(0.6, 1.3)) * (out - grey)
    out *= gains
    return np.clip(out, 0.0, 1.0, out=out)


def dead_leaves(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Dead leaves: occluding discs with radii distributed as ``r**-3`` (scale invariant: a 1/f^2
    power spectrum, like natural images) in colours of a small random palette; ``(h, w, 3)``
    float32 linear. Painted back to front at twice the size and area-downsampled (anti-aliased edges).
    """
    s = 2
    hh, ww = h * s, w * s
    r_min, r_max = 1.5 * s, max(3.0 * s, 0.25 * min(hh, ww))
    palette = np.stack([random_colour(rng, 0.01, 0.9) for _ in range(int(rng.integers(2, 12)))])
    out = np.empty((hh, ww, 3), np.float32)
    out[:] = palette[0]
    mean_area = 2 * math.pi * r_min ** 2 * math.log(r_max / r_min) / (1 - (r_min / r_max) ** 2)
    count = int(4 * hh * ww / mean_area)  # the plane covered four times over: almost no gaps
    q = rng.random(count)
    radii = 1.0 / np.sqrt(1.0 / r_min ** 2 - q * (1.0 / r_min ** 2 - 1.0 / r_max ** 2))  # inverse CDF of r^-3
    ys, xs = rng.uniform(0, hh, count), rng.uniform(0, ww, count)
    colours = np.clip(palette[rng.integers(len(palette), size=count)] * rng.uniform(0.6, 1.4, (count, 1)), 0, 1)
    for r, y, x, c in zip(radii, ys, xs, colours):
        cv2.circle(out, (int(x), int(y)), int(round(r)), tuple(float(v) for v in c), -1)
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)


_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
          cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_COMPLEX_SMALL, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX)
_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,:-/"


def text_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Lines of random text in a random font, size and colour on a flat background (signs, pages,
    labels): thin strokes and sharp, anti-aliased edges; ``(h, w, 3)`` float32 linear."""
    fg, bg = random_colour(rng, 0.01, 0.9), random_colour(rng, 0.01, 0.9)
    if abs(float(fg.mean()) - float(bg.mean())) < 0.1:  # keep the text readable
        fg = np.float32(0.9) - fg
    canvas = np.zeros((h, w), np.uint8)
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    scale = log_uniform(rng, 0.3, 2.5)
    thickness = int(rng.integers(1, 4))
    (_, line_h), _ = cv2.getTextSize("Ag", font, scale, thickness)
    step = int(line_h * rng.uniform(1.3, 2.2)) + 1
    for y in range(int(rng.integers(0, step)) + line_h, h + step, step):
        line = "".join(rng.choice(list(_CHARS), size=int(w / max(line_h * 0.6, 1)) + 2))
        cv2.putText(canvas, line, (int(rng.integers(-line_h * 4, 1)), y), font, scale, 255, thickness, cv2.LINE_AA)
    t = (canvas.astype(np.float32) / 255.0)[..., None]
    return (bg + (fg - bg) * t).astype(np.float32)


def _pattern(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A procedural texture: coloured 1/f noise, or anti-aliased stripes or checks."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    c0, c1 = random_colour(rng), random_colour(rng)
    u = rng.random()
    if u < 0.4:
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.rfftfreq(w)[None, :]
        f = np.sqrt(fx * fx + fy * fy)
        f[0, 0] = 1.0
        beta = rng.uniform(1.6, 2.4)
        spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
        spectrum[0, 0] = 0
        field = np.fft.irfft2(spectrum, s=(h, w)).astype(np.float32)
        field = (field - field.mean()) / (field.std() + 1e-8)
        if rng.random() < 0.5:  # hard-edged blobs
            t = np.clip(field * rng.uniform(2.0, 8.0) + 0.5, 0.0, 1.0)
        else:
            t = 1.0 / (1.0 + np.exp(-1.5 * field))
    else:
        theta = rng.uniform(0.0, math.pi)
        period = log_uniform(rng, 4.0, 64.0)
        a = (xx * math.cos(theta) + yy * math.sin(theta)) / period
        s = np.sin(2 * math.pi * a + rng.uniform(0, 2 * math.pi))
        if u < 0.7:
            t = np.clip(s * period / (2 * math.pi) + 0.5, 0.0, 1.0)  # anti-aliased stripes
        else:
            b = (-xx * math.sin(theta) + yy * math.cos(theta)) / period
            s2 = np.sin(2 * math.pi * b)
            t = np.clip(s * s2 * period / math.pi + 0.5, 0.0, 1.0)
    return (c0 + (c1 - c0) * t[..., None]).astype(np.float32)
