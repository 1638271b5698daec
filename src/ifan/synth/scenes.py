"""Scenes to render: real photographs as textures, procedural layered scenes, a real RGB-D pair.

Three kinds of scene, all deterministic from a seed:

* ``"layers"``: dead-leaves scenes: occluding textured shapes (discs, ellipses, rounded
  rectangles, polygons) in fronto-parallel depth groups over a (possibly slanted) background
  plane; one group often sits on the focus plane, so most scenes have a sharp subject.
* ``"planes"``: a few slanted textured planes with straight occluding edges, textures warped
  with the homography of each plane (perspective-correct foreshortening).
* ``"stereo"``: crops of scikit-image's ``stereo_motorcycle`` (Middlebury 2014): a real photo
  with a real depth map (from its ground-truth disparity), split into depth slabs whose hidden
  parts are filled from their surroundings.

Textures come from the photographs in :data:`PHOTOS` (all shipped inside scikit-image, see
their licences there) with random crops, rotations, scales and colour changes, and from
procedural patterns (1/f noise, stripes, checkers). Bright specular spots (linear values up to
~10) are sprinkled on some backgrounds; after blurring they saturate into bokeh discs.

:func:`sample_spec` draws everything random about a sample cheaply (kind, camera, aperture
profile, noise, depth range); :func:`build_scene` builds the layers from a spec.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from ifan.synth.color import u8_srgb_to_linear
from ifan.synth.optics import ThinLensCamera
from ifan.synth.psf import ApertureProfile, kernel_half_size
from ifan.synth.rendering import Layer, Scene, SensorNoise

#: Width of the simulated sensor (mm): a full-frame image downscaled to the output width.
SENSOR_WIDTH_MM = 36.0

KINDS = ("layers", "planes", "stereo")


@dataclass(frozen=True)
class PhotoInfo:
    """A photograph shipped inside scikit-image (``skimage.data.<loader>()``); ``grey``: one channel."""

    loader: str
    licence: str
    source: str
    grey: bool = False


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
}

# Middlebury 2014 "Motorcycle" calibration at scikit-image's 4x downsampled resolution (its docstring).
_MOTORCYCLE_FOCAL_PX = 994.978
_MOTORCYCLE_BASELINE_M = 0.193001
_MOTORCYCLE_DOFFS_PX = 31.086


@dataclass(frozen=True)
class SynthConfig:
    """What every sample of a dataset shares.

    Attributes:
        width, height: image size in pixels.
        max_blur: largest |blur radius| (px) a scene may reach; each scene draws its own maximum
            in ``[0.25, max_blur]``.
        noise: add sensor shot and read noise (random level per sample) to L and R.
        kinds: relative frequency of each scene kind (``layers``, ``planes``, ``stereo``).
    """

    width: int = 512
    height: int = 512
    max_blur: float = 20.0
    noise: bool = False
    kinds: tuple[tuple[str, float], ...] = (("layers", 0.6), ("planes", 0.25), ("stereo", 0.15))

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ValueError(f"image size must be at least 8x8, got {self.width}x{self.height}")
        if not 0 <= self.max_blur <= 64:
            raise ValueError(f"max_blur must be in [0, 64] px, got {self.max_blur}")
        unknown = {k for k, _ in self.kinds} - set(KINDS)
        if unknown or not any(w > 0 for _, w in self.kinds):
            raise ValueError(f"kinds must give positive weight to some of {KINDS}, got {self.kinds}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kinds"] = {k: float(w) for k, w in self.kinds}
        return d


@dataclass(frozen=True)
class SceneSpec:
    """Everything random about one sample except the scene's content (drawn from ``seed``).

    Attributes:
        kind: one of :data:`KINDS`.
        width, height: image size (px); ``pad``: canvas margin (px) on each side.
        seed: seed of the scene's content.
        camera, profile, noise: optics and sensor.
        inv_depth_far, inv_depth_near: the scene's inverse-depth range (1/m).
        focus: position of the focus plane in that range (0 = the far end, 1 = the near end).
        crop: for ``stereo``: ``(y, x, scale, flip)`` of the crop in the source photo.
    """

    kind: str
    width: int
    height: int
    pad: int
    seed: int
    camera: ThinLensCamera
    profile: ApertureProfile
    noise: SensorNoise | None
    inv_depth_far: float
    inv_depth_near: float
    focus: float
    crop: tuple[float, float, float, bool] | None = None

    def inv_depth(self, v: np.ndarray | float) -> np.ndarray | float:
        """Inverse depth (1/m) at the normalised position ``v`` (0 = far end, 1 = near end)."""
        return self.inv_depth_far + v * (self.inv_depth_near - self.inv_depth_far)

    @property
    def max_abs_coc(self) -> float:
        """Largest |blur radius| (px) over the scene's depth range."""
        return float(np.abs(self.camera.coc_radius_px(1.0 / np.array([self.inv_depth_far, self.inv_depth_near]))).max())

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "width": self.width, "height": self.height, "pad": self.pad, "seed": self.seed,
            "camera": self.camera.to_dict(), "profile": self.profile.to_dict(),
            "noise": None if self.noise is None else asdict(self.noise),
            "depth_near_m": 1.0 / self.inv_depth_near, "depth_far_m": 1.0 / self.inv_depth_far,
            "focus": self.focus, "max_abs_coc_px": self.max_abs_coc,
            "crop": None if self.crop is None else list(self.crop),
        }


# ----------------------------------------------------------------------------------------------
# Photographs


def _skimage_data():
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
    data = _skimage_data()
    image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, PHOTOS[name].loader)()
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
    left, _, disp = _skimage_data().stereo_motorcycle()
    disp = np.asarray(disp, dtype=np.float64)
    if disp.ndim == 3:
        disp = disp[..., 0]
    disp = _fill_rows_far(disp)
    depth = _MOTORCYCLE_FOCAL_PX * _MOTORCYCLE_BASELINE_M / (disp + _MOTORCYCLE_DOFFS_PX)
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


# ----------------------------------------------------------------------------------------------
# Camera and spec sampling


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def sample_camera(rng: np.random.Generator, width: int, inv_depth_far: float, inv_depth_near: float,
                  focus: float, max_blur: float) -> ThinLensCamera:
    """A thin-lens camera whose largest blur over the given inverse-depth range is ``max_blur`` px.

    The output pixel is a full-frame sensor (36 mm wide) downscaled to ``width`` pixels. The
    f-number is drawn in [1.4, 8] and the focal length solved for; where it leaves [14, 400] mm
    it is clipped and the f-number solved instead (clipped to [1, 32], in which case the
    largest blur differs from ``max_blur``).
    """
    pitch_mm = SENSOR_WIDTH_MM / width
    inv_s = inv_depth_far + focus * (inv_depth_near - inv_depth_far)
    s_mm = 1000.0 / inv_s
    spread = max(inv_s - inv_depth_far, inv_depth_near - inv_s)  # 1/m
    target = max(max_blur, 1e-3)
    k = target / (s_mm / 1000.0 * spread)  # radius at infinity, px
    n = _log_uniform(rng, 1.4, 8.0)
    knp = k * n * pitch_mm
    f = -knp + math.sqrt(knp * knp + 2.0 * knp * s_mm)
    if not 14.0 <= f <= 400.0:
        f = min(max(f, 14.0), min(400.0, 0.5 * s_mm))
        n = min(max(f * f / (2.0 * k * pitch_mm * (s_mm - f)), 1.0), 32.0)
    return ThinLensCamera(focal_length_mm=f, f_number=n, focus_distance_m=s_mm / 1000.0,
                          pixel_pitch_um=pitch_mm * 1000.0)


def _stereo_crop(rng: np.random.Generator, width: int, height: int) -> tuple[float, float, float, bool]:
    src_h, src_w = load_stereo_motorcycle()[1].shape
    scale = min(src_h / height, src_w / width) * rng.uniform(0.75, 1.0)  # source px per output px
    y = rng.uniform(0, src_h - height * scale)
    x = rng.uniform(0, src_w - width * scale)
    return float(y), float(x), float(scale), bool(rng.random() < 0.5)


def sample_spec(rng: np.random.Generator, config: SynthConfig = SynthConfig()) -> SceneSpec:
    """Draw the kind, camera, aperture profile, noise and depth range of one sample."""
    names, weights = zip(*config.kinds)
    p = np.asarray(weights, dtype=np.float64)
    kind = str(names[rng.choice(len(names), p=p / p.sum())])
    crop = None
    if kind == "stereo":
        crop = _stereo_crop(rng, config.width, config.height)
        inv_far, inv_near = _stereo_inv_depth_range(crop, config.width, config.height)
    else:
        near = _log_uniform(rng, 0.5, 3.0)
        far = near * _log_uniform(rng, 1.5, 20.0)
        inv_far, inv_near = 1.0 / far, 1.0 / near
    u = rng.random()
    focus = 0.0 if u < 0.15 else 1.0 if u < 0.4 else float(rng.uniform(0.0, 1.0))
    max_blur = float(rng.uniform(0.25, max(config.max_blur, 0.25)))
    camera = sample_camera(rng, config.width, inv_far, inv_near, focus, max_blur)
    profile = ApertureProfile(edge=float(rng.uniform(0.03, 0.2)), falloff=float(rng.uniform(-0.15, 0.35)),
                              split=float(rng.uniform(0.03, 0.15)))
    noise = None
    if config.noise:
        noise = SensorNoise(full_well_e=_log_uniform(rng, 500.0, 20000.0), read_noise_e=float(rng.uniform(1.0, 6.0)))
    seed = int(rng.integers(0, 2**63 - 1))
    spec = SceneSpec(kind, config.width, config.height, 0, seed, camera, profile, noise, inv_far, inv_near, focus,
                     crop)
    return replace(spec, pad=kernel_half_size(spec.max_abs_coc, profile) + 1)  # room for the largest kernel


def _stereo_inv_depth_range(crop, width: int, height: int) -> tuple[float, float]:
    y, x, scale, _ = crop
    depth = load_stereo_motorcycle()[1]
    window = depth[int(y):int(math.ceil(y + height * scale)), int(x):int(math.ceil(x + width * scale))]
    return 1.0 / float(window.max()), 1.0 / float(window.min())


# ----------------------------------------------------------------------------------------------
# Textures


def _random_colour(rng: np.random.Generator, lo: float = 0.02, hi: float = 0.9) -> np.ndarray:
    """A random linear RGB colour with a log-uniform brightness."""
    hue = rng.dirichlet((1.0, 1.0, 1.0)) * 3.0
    sat = rng.uniform(0.0, 1.0)
    c = (1.0 - sat) + sat * hue
    return (c / c.max() * _log_uniform(rng, lo, hi)).astype(np.float32)


def _texture(rng: np.random.Generator, h: int, w: int, warp) -> np.ndarray:
    """A random ``(h, w, 3)`` float32 linear texture: a recoloured photograph (75 %) or a pattern.

    ``warp(src, h, w)`` maps a source image onto the ``h x w`` output (crop, rotation, scale or
    a plane's homography); colour changes are applied after it, to the pixels actually used.
    """
    if rng.random() >= 0.75:
        return warp(_pattern(rng, h, w), h, w)
    name = str(rng.choice(sorted(PHOTOS)))
    out = warp(load_photo(name), h, w)
    if PHOTOS[name].grey:
        c0, c1 = _random_colour(rng, 0.005, 0.2), _random_colour(rng, 0.2, 1.0)
        return (c0 + (c1 - c0) * out[..., :1]).astype(np.float32)
    gains = np.exp(rng.normal(0.0, 0.2, 3)).astype(np.float32) * np.float32(_log_uniform(rng, 0.5, 1.4))
    grey = out.mean(axis=2, keepdims=True)
    out = grey + np.float32(rng.uniform(0.6, 1.3)) * (out - grey)
    out *= gains
    return np.clip(out, 0.0, 1.0, out=out)


def _pattern(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A procedural texture: coloured 1/f noise, or anti-aliased stripes or checks."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    c0, c1 = _random_colour(rng), _random_colour(rng)
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
        period = _log_uniform(rng, 4.0, 64.0)
        a = (xx * math.cos(theta) + yy * math.sin(theta)) / period
        s = np.sin(2 * math.pi * a + rng.uniform(0, 2 * math.pi))
        if u < 0.7:
            t = np.clip(s * period / (2 * math.pi) + 0.5, 0.0, 1.0)  # anti-aliased stripes
        else:
            b = (-xx * math.sin(theta) + yy * math.cos(theta)) / period
            s2 = np.sin(2 * math.pi * b)
            t = np.clip(s * s2 * period / math.pi + 0.5, 0.0, 1.0)
    return (c0 + (c1 - c0) * t[..., None]).astype(np.float32)


def _affine_warp(rng: np.random.Generator):
    """A random rotation, scale (0.55x to 1.25x texels per pixel), flip and crop, as a ``warp`` for :func:`_texture`."""
    theta = rng.uniform(0.0, 2 * math.pi)
    s = _log_uniform(rng, 0.55, 1.25)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    t = rng.random(2)

    def warp(src: np.ndarray, h: int, w: int) -> np.ndarray:
        c, si = math.cos(theta) * s, math.sin(theta) * s
        sh, sw = src.shape[:2]
        ty, tx = t[0] * sh, t[1] * sw
        # output (x, y) -> source (x', y') (WARP_INVERSE_MAP)
        m = np.array([[flip * c, -si, tx - flip * c * w / 2 + si * h / 2],
                      [flip * si, c, ty - flip * si * w / 2 - c * h / 2]], np.float64)
        return cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT_101)

    return warp


# ----------------------------------------------------------------------------------------------
# Geometry: planes and shapes


def _plane(rng: np.random.Generator, spec: SceneSpec, shape: tuple[int, int], v_lo: float,
           v_hi: float) -> tuple[np.ndarray, np.ndarray]:
    """A textured 3-D plane whose inverse depth spans ``[inv_depth(v_lo), inv_depth(v_hi)]`` over the canvas.

    Returns ``(rgb, depth)``; a random texture is warped by the plane's homography.
    """
    hc, wc = shape
    f = spec.camera.focal_length_px
    cy, cx = (hc - 1) / 2.0, (wc - 1) / 2.0
    i_lo, i_hi = spec.inv_depth(v_lo), spec.inv_depth(v_hi)
    theta = rng.uniform(0.0, 2 * math.pi)
    reach = wc / 2.0 * abs(math.cos(theta)) + hc / 2.0 * abs(math.sin(theta))
    g = (i_hi - i_lo) / (2.0 * reach)
    gx, gy, ic = g * math.cos(theta), g * math.sin(theta), 0.5 * (i_lo + i_hi)
    yy, xx = np.mgrid[:hc, :wc]
    inv = ic + gx * (xx - cx) + gy * (yy - cy)
    depth = (1.0 / inv).astype(np.float32)
    # 3-D plane n.P = h with 1/Z = n.d / h, d = ((x - cx)/f, (y - cy)/f, 1)
    n = np.array([gx * f, gy * f, ic])
    n /= np.linalg.norm(n)
    e1 = np.array([1.0, 0.0, 0.0]) - n[0] * n
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    phi = rng.uniform(0.0, 2 * math.pi)
    e1, e2 = math.cos(phi) * e1 + math.sin(phi) * e2, -math.sin(phi) * e1 + math.cos(phi) * e2
    magnification = rng.uniform(0.9, 1.4) * ic / i_lo  # output px per texel at the centre (>= ~0.9 everywhere)
    tau = f * ic / magnification  # texels per metre
    rows = []
    for e in (e1, e2):
        rows.append([tau * e[0] / f, tau * e[1] / f, tau * (e[2] - e[0] * cx / f - e[1] * cy / f)])
    rows.append([gx, gy, ic - gx * cx - gy * cy])
    hom = np.array(rows)
    jitter = rng.uniform(0.25, 0.75, 2)

    def warp(src: np.ndarray, h: int, w: int) -> np.ndarray:
        m = hom.copy()
        centre = m @ np.array([cx, cy, 1.0])  # the canvas centre lands near the middle of the source
        m[0] += (jitter[0] * src.shape[1] - centre[0] / centre[2]) * m[2]
        m[1] += (jitter[1] * src.shape[0] - centre[1] / centre[2]) * m[2]
        return cv2.warpPerspective(src, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_REFLECT_101)

    return _texture(rng, hc, wc, warp), depth


def _shape_alpha(rng: np.random.Generator, size: float) -> np.ndarray:
    """Anti-aliased coverage of a random shape of radius ~``size`` px, in a square of side ``2 ceil(1.2 size) + 1``."""
    half = int(math.ceil(1.2 * size)) + 1
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    theta = rng.uniform(0.0, math.pi)
    x = xx * math.cos(theta) + yy * math.sin(theta)
    y = -xx * math.sin(theta) + yy * math.cos(theta)
    u = rng.random()
    if u < 0.3:  # disc or ellipse
        a, b = size, size * rng.uniform(0.4, 1.0)
        sdf = (np.sqrt((x / a) ** 2 + (y / b) ** 2) - 1.0) * b
    elif u < 0.6:  # rounded rectangle
        a, b = size * rng.uniform(0.5, 1.0), size * rng.uniform(0.2, 1.0)
        rr = min(a, b) * rng.uniform(0.0, 0.6)
        qx, qy = np.abs(x) - a + rr, np.abs(y) - b + rr
        sdf = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - rr
    else:  # convex polygon
        k = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * math.pi, k))
        radius = size * rng.uniform(0.6, 1.0, k)
        px, py = radius * np.cos(angles), radius * np.sin(angles)
        sdf = np.full(x.shape, -np.inf, np.float32)
        for i in range(k):
            ex, ey = px[(i + 1) % k] - px[i], py[(i + 1) % k] - py[i]
            norm = math.hypot(ex, ey) + 1e-9
            d = ((x - px[i]) * ey - (y - py[i]) * ex) / norm  # > 0 outside for counter-clockwise vertices
            sdf = np.maximum(sdf, d)
    return np.clip(0.5 - sdf, 0.0, 1.0).astype(np.float32)


def _add_highlights(rng: np.random.Generator, rgb: np.ndarray) -> None:
    """Sprinkle small bright spots (linear values 2 to 12) on a surface, in place."""
    h, w = rgb.shape[:2]
    for _ in range(int(rng.integers(3, 30))):
        radius = rng.uniform(0.6, 2.0)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        half = int(math.ceil(radius)) + 1
        y0, x0 = int(cy) - half, int(cx) - half
        yy, xx = np.mgrid[y0:y0 + 2 * half + 1, x0:x0 + 2 * half + 1]
        cover = np.clip(radius + 0.5 - np.hypot(yy - cy, xx - cx), 0.0, 1.0).astype(np.float32)
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        colour = _random_colour(rng, 0.5, 1.0) * rng.uniform(2.0, 12.0)
        region = rgb[yy[ok], xx[ok]]
        c = cover[ok][:, None]
        rgb[yy[ok], xx[ok]] = region * (1.0 - c) + colour * c


def _background(rng: np.random.Generator, spec: SceneSpec, shape: tuple[int, int],
                slanted: bool) -> tuple[Layer, float]:
    """The farthest surface: an opaque textured plane at the far end of the range, maybe slanted.

    Returns the layer and the normalised position (0 = far) of its nearest point.
    """
    if slanted:
        ratio_cap = min(2.5 * spec.inv_depth_far, spec.inv_depth_near)
        v_cap = (ratio_cap - spec.inv_depth_far) / (spec.inv_depth_near - spec.inv_depth_far)
        v_hi = float(rng.uniform(0.0, min(0.35, v_cap)))
    else:
        v_hi = 0.0
    rgb, depth = _plane(rng, spec, shape, 0.0, v_hi)
    if rng.random() < 0.35:
        _add_highlights(rng, rgb)
    return Layer(rgb, np.ones(shape, np.float32), depth), v_hi


# ----------------------------------------------------------------------------------------------
# Scene kinds


def _layers_scene(rng: np.random.Generator, spec: SceneSpec) -> list[Layer]:
    shape = (spec.height + 2 * spec.pad, spec.width + 2 * spec.pad)
    hc, wc = shape
    background, v_back = _background(rng, spec, shape, slanted=rng.random() < 0.5)
    layers = [background]
    v_min = v_back + 0.05 + 0.05 * (1.0 - v_back) * rng.random()  # every leaf in front of the background
    groups = int(rng.integers(3, 9))
    v = np.sort(rng.uniform(v_min, 1.0, groups))
    if rng.random() < 0.7:
        v[-1] = 1.0
    if spec.focus > v_min and rng.random() < 0.6:
        v[int(rng.integers(0, groups))] = spec.focus
        v = np.sort(v)
    premult = [np.zeros(shape + (3,), np.float32) for _ in range(groups)]
    cover = [np.zeros(shape, np.float32) for _ in range(groups)]
    side = min(spec.width, spec.height)
    for _ in range(int(rng.integers(15, 61))):
        g = int(rng.integers(0, groups))
        size = _log_uniform(rng, 0.03, 0.3) * side * (0.7 + 0.6 * v[g])
        a = _shape_alpha(rng, size)
        half = a.shape[0] // 2
        cy, cx = int(rng.integers(0, hc)), int(rng.integers(0, wc))
        y0, x0 = max(cy - half, 0), max(cx - half, 0)
        y1, x1 = min(cy + half + 1, hc), min(cx + half + 1, wc)
        a = a[y0 - (cy - half):y1 - (cy - half), x0 - (cx - half):x1 - (cx - half)]
        tex = _texture(rng, y1 - y0, x1 - x0, _affine_warp(rng))
        p, c = premult[g][y0:y1, x0:x1], cover[g][y0:y1, x0:x1]
        p *= 1.0 - a[..., None]
        p += tex * a[..., None]
        c *= 1.0 - a
        c += a
    for g in range(groups):
        if not cover[g].any():
            continue
        rgb = premult[g] / np.maximum(cover[g], 1e-6)[..., None]
        depth = np.full(shape, 1.0 / spec.inv_depth(float(v[g])), np.float32)
        layers.append(Layer(rgb.astype(np.float32), cover[g], depth))
    return layers


def _planes_scene(rng: np.random.Generator, spec: SceneSpec) -> list[Layer]:
    shape = (spec.height + 2 * spec.pad, spec.width + 2 * spec.pad)
    hc, wc = shape
    background, v_back = _background(rng, spec, shape, slanted=rng.random() < 0.8)
    layers = [background]
    count = int(rng.integers(1, 4))
    # disjoint slices of the depth range, far to near, so that no plane pierces another
    edges = np.sort(rng.uniform(v_back + 0.05, 1.0, count - 1))
    edges = np.concatenate([[v_back + 0.05], edges, [1.0]])
    ranges = []
    for k in range(count):
        lo = float(rng.uniform(edges[k], 0.5 * (edges[k] + edges[k + 1])))
        cap = min(spec.inv_depth(float(edges[k + 1])), 2.5 * spec.inv_depth(lo))  # texture scale varies <= 2.5x
        v_cap = (cap - spec.inv_depth_far) / (spec.inv_depth_near - spec.inv_depth_far)
        ranges.append((lo, float(rng.uniform(lo, max(lo, v_cap)))))
    yy, xx = np.mgrid[:hc, :wc].astype(np.float32)
    for lo, hi in ranges:
        rgb, depth = _plane(rng, spec, shape, lo, hi)
        theta = rng.uniform(0.0, 2 * math.pi)
        py, px = rng.uniform(0.2, 0.8) * hc, rng.uniform(0.2, 0.8) * wc
        sdf = (xx - px) * math.cos(theta) + (yy - py) * math.sin(theta)
        if rng.random() < 0.5:  # a wedge: two half-planes
            theta2 = theta + rng.uniform(0.3, 2.5)
            sdf = np.maximum(sdf, (xx - px) * math.cos(theta2) + (yy - py) * math.sin(theta2))
        alpha = np.clip(0.5 - sdf, 0.0, 1.0).astype(np.float32)
        layers.append(Layer(rgb, alpha, depth))
    return layers


def _box_mean(values: np.ndarray, weight: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums of ``weight * values`` and of ``weight`` over ``(2 radius + 1)^2`` windows."""
    k = (2 * radius + 1, 2 * radius + 1)
    num = cv2.boxFilter(values * (weight[..., None] if values.ndim == 3 else weight), -1, k, normalize=False,
                        borderType=cv2.BORDER_CONSTANT)
    den = cv2.boxFilter(weight, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    return num, den


def rgbd_layers(rgb: np.ndarray, depth: np.ndarray, camera: ThinLensCamera, profile: ApertureProfile,
                slab_px: float = 4.0) -> list[Layer]:
    """Split an RGB-D image (one visible surface per pixel) into depth slabs, far to near.

    A slab holds the pixels whose blur radius falls in a ``slab_px`` wide interval. Behind the
    nearer pixels within reach of its blur (and of theirs), a slab is made opaque and filled with
    its own colours and depths, averaged from its visible pixels nearby (normalised box filters
    at two scales): the background a blurred foreground edge reveals. The slab's depth there is
    kept inside the slab's range.

    Args:
        rgb: ``(H, W, 3)`` float32 linear; depth: ``(H, W)`` metres; camera, profile: the optics.
        slab_px: thickness of a slab in blur radius (px).

    Returns:
        The layers, far to near.
    """
    coc = camera.coc_radius_px(depth)
    lo, hi = float(coc.min()), float(coc.max())
    slab = np.minimum(((coc - lo) / slab_px).astype(np.int64), max(int((hi - lo) / slab_px), 0))
    reach_all = kernel_half_size(max(abs(lo), abs(hi)), profile)
    layers = []
    for s in range(int(slab.max()), -1, -1):  # larger radius = farther
        own = slab == s
        if not own.any():
            continue
        s_lo, s_hi = float(coc[own].min()), float(coc[own].max())
        nearer = slab < s
        reach = kernel_half_size(max(abs(s_lo), abs(s_hi)), profile) + reach_all + 1
        weight = own.astype(np.float32)
        _, count = _box_mean(depth, weight, reach)
        hidden = nearer & (count > 0)
        colour, depth_s = rgb.copy(), depth.copy()
        if hidden.any():
            num_c, den_c = _box_mean(rgb, weight, reach)
            num_d, _ = _box_mean(depth, weight, reach)
            fine_c, fine_n = _box_mean(rgb, weight, 3)
            fine_d, _ = _box_mean(depth, weight, 3)
            use_fine = fine_n > 0
            fill_c = np.where(use_fine[..., None], fine_c / np.maximum(fine_n, 1e-6)[..., None],
                              num_c / np.maximum(den_c, 1e-6)[..., None])
            fill_d = np.where(use_fine, fine_d / np.maximum(fine_n, 1e-6), num_d / np.maximum(den_c, 1e-6))
            z_lo, z_hi = float(depth[own].min()), float(depth[own].max())
            colour[hidden] = fill_c[hidden]
            depth_s[hidden] = np.clip(fill_d[hidden], z_lo, z_hi)
        alpha = (own | hidden).astype(np.float32)
        layers.append(Layer(colour.astype(np.float32), alpha, depth_s.astype(np.float32)))
    return layers


def _stereo_scene(rng: np.random.Generator, spec: SceneSpec) -> list[Layer]:
    y, x, scale, flip = spec.crop
    src_rgb, src_depth = load_stereo_motorcycle()
    hc, wc = spec.height + 2 * spec.pad, spec.width + 2 * spec.pad
    # canvas pixel (i, j) -> source (x + (j - pad + 0.5) * scale - 0.5, ...); reflected outside the photo
    m = np.array([[scale, 0.0, x + (0.5 - spec.pad) * scale - 0.5],
                  [0.0, scale, y + (0.5 - spec.pad) * scale - 0.5]])
    src = src_rgb
    if scale > 1.0:  # shrink the source first to avoid aliasing
        src = cv2.resize(np.ascontiguousarray(src_rgb), None, fx=1.0 / scale, fy=1.0 / scale,
                         interpolation=cv2.INTER_AREA)
        m[:, :2] /= scale
        m[:, 2] = (m[:, 2] + 0.5) / scale - 0.5
    rgb = cv2.warpAffine(np.ascontiguousarray(src), m, (wc, hc), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT_101)
    m_d = np.array([[scale, 0.0, x + (0.5 - spec.pad) * scale - 0.5],
                    [0.0, scale, y + (0.5 - spec.pad) * scale - 0.5]])
    depth = cv2.warpAffine(np.ascontiguousarray(src_depth), m_d, (wc, hc),
                           flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)
    if flip:
        rgb, depth = rgb[:, ::-1], depth[:, ::-1]
    return rgbd_layers(np.ascontiguousarray(rgb), np.ascontiguousarray(depth), spec.camera, spec.profile)


def build_scene(spec: SceneSpec) -> Scene:
    """The layers of the scene described by ``spec`` (deterministic)."""
    rng = np.random.default_rng(spec.seed)
    builders = {"layers": _layers_scene, "planes": _planes_scene, "stereo": _stereo_scene}
    if spec.kind not in builders:
        raise ValueError(f"unknown scene kind {spec.kind!r}; expected one of {KINDS}")
    return Scene(builders[spec.kind](rng, spec), pad=spec.pad)
