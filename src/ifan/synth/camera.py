"""What a camera does to the light after the lens: encoding, tone, sharpening, resizing, JPEG.

A render (:class:`~ifan.synth.rendering.DualPixelImages`) holds the light that reached the
sensor, blurred in linear light (physically right) or on gamma-encoded values (how many
simple defocus simulators, and some editing tools, blur). :func:`develop` turns it into the
images a camera or phone would save, in this order:

1. encoding: linear light to sRGB values (a render blurred on encoded values is encoded already);
2. tone: an S-shaped (``tone > 0``: more contrast) or flattening (``< 0``) curve on the encoded
   values, ``y = x - tone * sin(2 pi x) / (2 pi)`` (monotonic for ``|tone| < 1``);
3. sharpening: an unsharp mask ``x + amount * (x - gauss_sigma(x))``;
4. resizing: the scene is rendered ``render_scale`` times larger and downsampled (area, linear
   or cubic interpolation), as photos are for the web; the blur and disparity maps shrink with it;
5. JPEG at ``jpeg_quality`` (4:2:0 chroma), of the centre view only.

Steps 1 to 4 apply identically to the centre view, both dual-pixel views and the all-in-focus
target, so that an in-focus region of the input equals the target up to noise and JPEG: the
model learns to undo defocus, not the camera's look. Sensor noise (``SensorNoise``) is added
by the renderer before all this; JPEG touches the input alone, as it would in a camera.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from ifan.synth.color import linear_to_srgb

#: Where the blur is applied: in linear light, or on sRGB-encoded values.
BLUR_SPACES = ("linear", "gamma")
RESAMPLERS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class CameraPipeline:
    """The camera's processing after the sensor (defaults: plain sRGB encoding, nothing else).

    Attributes:
        tone: strength of the tone curve on encoded values, in (-1, 1); 0: none.
        sharpen_sigma, sharpen_amount: unsharp mask (px, gain); amount 0: none.
        render_scale: the scene is rendered this many times larger, then resized (>= 1).
        resample: ``area``, ``linear`` or ``cubic``: the interpolation of that resize.
        jpeg_quality: JPEG quality of the centre view, 1 to 100; 0: no JPEG.
    """

    tone: float = 0.0
    sharpen_sigma: float = 1.0
    sharpen_amount: float = 0.0
    render_scale: float = 1.0
    resample: str = "area"
    jpeg_quality: int = 0

    def __post_init__(self) -> None:
        if not -1.0 < self.tone < 1.0:
            raise ValueError(f"CameraPipeline.tone must be in (-1, 1), got {self.tone}")
        if self.sharpen_amount < 0 or self.sharpen_sigma <= 0:
            raise ValueError("CameraPipeline needs sharpen_amount >= 0 and sharpen_sigma > 0")
        if not self.render_scale >= 1.0:
            raise ValueError(f"CameraPipeline.render_scale must be >= 1, got {self.render_scale}")
        if self.resample not in RESAMPLERS:
            raise ValueError(f"CameraPipeline.resample must be one of {sorted(RESAMPLERS)}, got {self.resample!r}")
        if not 0 <= self.jpeg_quality <= 100:
            raise ValueError(f"CameraPipeline.jpeg_quality must be in 0..100, got {self.jpeg_quality}")

    def to_dict(self) -> dict:
        return asdict(self)


def sample_pipeline(rng: np.random.Generator) -> CameraPipeline:
    """A random camera: tone curve (p 0.5, -0.25 to 0.45), sharpening (p 0.45, sigma 0.5-1.5 px,
    amount 0.15-0.9), resizing (p 0.35, 1.15x-2x, area/linear/cubic), JPEG (p 0.6, quality 60-98)."""
    tone = float(rng.uniform(-0.25, 0.45)) if rng.random() < 0.5 else 0.0
    sigma, amount = 1.0, 0.0
    if rng.random() < 0.45:
        sigma, amount = float(rng.uniform(0.5, 1.5)), float(rng.uniform(0.15, 0.9))
    scale, resample = 1.0, "area"
    if rng.random() < 0.35:
        scale, resample = float(rng.uniform(1.15, 2.0)), str(rng.choice(sorted(RESAMPLERS)))
    quality = int(rng.integers(60, 99)) if rng.random() < 0.6 else 0
    return CameraPipeline(tone, sigma, amount, scale, resample, quality)


def tone_curve(x: np.ndarray, tone: float) -> np.ndarray:
    """``x - tone * sin(2 pi x) / (2 pi)`` on values in [0, 1]: fixes 0, 1/2 and 1, monotonic."""
    if tone == 0:
        return x
    return (x - tone * np.sin(2 * math.pi * x) / (2 * math.pi)).astype(np.float32)


def unsharp_mask(x: np.ndarray, sigma: float, amount: float) -> np.ndarray:
    """``clip(x + amount * (x - gaussian_blur(x, sigma)), 0, 1)``, ``(H, W, 3)`` float32."""
    if amount == 0:
        return x
    blurred = cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(x + amount * (x - blurred), 0.0, 1.0).astype(np.float32)


def jpeg_roundtrip(x: np.ndarray, quality: int) -> np.ndarray:
    """Encode ``(H, W, 3)`` values in [0, 1] as an 8-bit JPEG of ``quality`` and decode them."""
    u8 = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(u8[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    return (cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1] / np.float32(255.0)).astype(np.float32)


def develop(images, pipeline: CameraPipeline, blur_space: str = "linear", out_size: tuple[int, int] | None = None):
    """The saved images of a render: see the module docstring.

    Args:
        images: :class:`~ifan.synth.rendering.DualPixelImages` in linear light (``blur_space``
            ``linear``) or already sRGB-encoded (``gamma``), at the render size.
        pipeline: the camera's processing.
        out_size: ``(width, height)`` of the saved images (the render size if None).

    Returns:
        :class:`~ifan.synth.rendering.DualPixelImages` with ``encoding="srgb"``: sRGB-encoded
        float32 in [0, 1]; maps resized (blur and disparity in output pixels).
    """
    if blur_space not in BLUR_SPACES:
        raise ValueError(f"blur_space must be one of {BLUR_SPACES}, got {blur_space!r}")
    h, w = images.center.shape[:2]
    ow, oh = out_size if out_size is not None else (w, h)
    factor = w / ow

    def finish(x: np.ndarray) -> np.ndarray:
        x = linear_to_srgb(x) if blur_space == "linear" else np.clip(x, 0.0, 1.0).astype(np.float32)
        x = unsharp_mask(tone_curve(x, pipeline.tone), pipeline.sharpen_sigma, pipeline.sharpen_amount)
        if (ow, oh) != (w, h):
            x = np.clip(cv2.resize(x, (ow, oh), interpolation=RESAMPLERS[pipeline.resample]), 0.0, 1.0)
        return np.ascontiguousarray(x, dtype=np.float32)

    center, left, right, target = (finish(x) for x in (images.center, images.left, images.right, images.target))
    if pipeline.jpeg_quality:
        center = jpeg_roundtrip(center, pipeline.jpeg_quality)
    maps = {}
    for name in ("depth", "coc", "disparity"):
        m = getattr(images, name)
        if (ow, oh) != (w, h):
            m = cv2.resize(m, (ow, oh), interpolation=cv2.INTER_AREA if name != "depth" else cv2.INTER_NEAREST)
            if name != "depth":
                m = m / np.float32(factor)
        maps[name] = np.ascontiguousarray(m, dtype=np.float32)
    return replace(images, center=center, left=left, right=right, target=target, encoding="srgb", **maps)
