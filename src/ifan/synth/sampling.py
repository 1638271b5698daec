"""Everything random about a sample but its content: kind, camera, aperture, noise, processing.

:class:`SynthConfig` is what a dataset's samples share; :func:`sample_spec` draws one sample's
:class:`SceneSpec` from it cheaply (the scene itself is built from the spec's seed by
:func:`ifan.synth.scenes.build_scene`).

The options added in ifan 0.2 (PSF families, cat's eye, gamma-space blur, the camera pipeline,
sharp samples, rich content, the ``portrait`` and ``night`` kinds) draw random numbers only when
they are switched on, so a configuration without them gives the same samples as ifan 0.1.
:meth:`SynthConfig.mixture` is the documented mixture the shipped model is trained on
(docs/synth.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from ifan.synth.assets import CONTENTS, load_stereo_motorcycle, log_uniform
from ifan.synth.camera import CameraPipeline, sample_pipeline
from ifan.synth.optics import ThinLensCamera
from ifan.synth.psf import PSF_FAMILIES, ApertureProfile, kernel_half_size, sample_profile
from ifan.synth.rendering import SensorNoise

#: Width of the simulated sensor (mm): a full-frame image downscaled to the output width.
SENSOR_WIDTH_MM = 36.0

#: Scene kinds (:mod:`ifan.synth.scenes`): ``layers``, ``planes`` and ``stereo`` (ifan 0.1);
#: ``portrait`` (an in-focus subject before a defocused background) and ``night`` (point lights).
KINDS = ("layers", "planes", "stereo", "portrait", "night")


@dataclass(frozen=True)
class SynthConfig:
    """What every sample of a dataset shares.

    Attributes:
        width, height: image size in pixels.
        max_blur: largest |blur radius| (px) a scene may reach; each scene draws its own maximum
            in ``[0.25, max_blur]``.
        noise: add sensor shot and read noise (random level per sample) to L and R.
        kinds: relative frequency of each scene kind (:data:`KINDS`).
        psf: relative frequency of each aperture family (:data:`~ifan.synth.psf.PSF_FAMILIES`).
        cateye_p: probability of cat's-eye vignetting (any family but ``gaussian``).
        gamma_blur_p: probability of blurring sRGB-encoded values instead of linear light.
        pipeline_p: probability of a random camera pipeline (:func:`~ifan.synth.camera.sample_pipeline`:
            tone curve, sharpening, resizing, JPEG); otherwise plain sRGB encoding.
        sharp_p: probability of a sample with almost no blur (largest radius 0 to 0.6 px).
        content: texture mixture: ``classic`` or ``rich`` (:func:`~ifan.synth.assets.texture`).
        noise_on_target: with ``noise``, the target carries C's noise field too
            (:class:`~ifan.synth.rendering.SensorNoise`: ``on_target``).
        soft_lens_p: probability of a lens that is soft in focus: a Gaussian of 0.3 to 1 output px
            on every image, the target included (real in-focus photos are rarely crisp to the pixel,
            and a model should leave that softness alone rather than take it for defocus).
    """

    width: int = 512
    height: int = 512
    max_blur: float = 20.0
    noise: bool = False
    kinds: tuple[tuple[str, float], ...] = (("layers", 0.6), ("planes", 0.25), ("stereo", 0.15))
    psf: tuple[tuple[str, float], ...] = (("disc", 1.0),)
    cateye_p: float = 0.0
    gamma_blur_p: float = 0.0
    pipeline_p: float = 0.0
    sharp_p: float = 0.0
    content: str = "classic"
    noise_on_target: bool = False
    soft_lens_p: float = 0.0  # last: added after 0.2, so positional construction keeps its meaning

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ValueError(f"image size must be at least 8x8, got {self.width}x{self.height}")
        if not 0 <= self.max_blur <= 64:
            raise ValueError(f"max_blur must be in [0, 64] px, got {self.max_blur}")
        for name, allowed in (("kinds", KINDS), ("psf", PSF_FAMILIES)):
            mix = getattr(self, name)
            unknown = {k for k, _ in mix} - set(allowed)
            if unknown or not any(w > 0 for _, w in mix) or any(w < 0 for _, w in mix):
                raise ValueError(f"{name} must give non-negative weights, some positive, to {allowed}, got {mix}")
        for name in ("cateye_p", "gamma_blur_p", "pipeline_p", "sharp_p", "soft_lens_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.content not in CONTENTS:
            raise ValueError(f"content must be one of {CONTENTS}, got {self.content!r}")

    @classmethod
    def mixture(cls, width: int = 512, height: int = 512, max_blur: float = 20.0, noise: bool = True) -> SynthConfig:
        """The documented training mixture of ifan 0.2 (``ifan synth --mixture``; docs/synth.md)."""
        return cls(width=width, height=height, max_blur=max_blur, noise=noise,
                   kinds=(("layers", 0.3), ("planes", 0.12), ("stereo", 0.08), ("portrait", 0.35), ("night", 0.15)),
                   psf=(("disc", 0.3), ("polygon", 0.2), ("rim", 0.15), ("soft", 0.15), ("gaussian", 0.2)),
                   cateye_p=0.25, gamma_blur_p=0.35, pipeline_p=0.8, sharp_p=0.06, content="rich",
                   noise_on_target=True)

    @classmethod
    def from_options(cls, width: int, height: int, max_blur: float, noise: bool, mixture: bool,
                     **parts) -> SynthConfig:
        """The defaults (or with ``mixture`` the documented mixture) with the ``parts`` that are not
        None replaced (``kinds``, ``psf``, ``cateye_p``, ...); ``noise`` switches noise on."""
        base = cls.mixture(width, height, max_blur) if mixture else cls(width, height, max_blur)
        chosen = {k: v for k, v in parts.items() if v is not None}
        return replace(base, noise=base.noise or noise, **chosen)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kinds"] = {k: float(w) for k, w in self.kinds}
        d["psf"] = {k: float(w) for k, w in self.psf}
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
        content: texture mixture (:data:`~ifan.synth.assets.CONTENTS`).
        blur_space: ``linear`` (physical) or ``gamma`` (blur on sRGB-encoded values).
        pipeline: the camera's processing after the sensor (None: plain sRGB encoding).
        out_size: ``(width, height)`` of the saved images when the scene is rendered larger
            (``pipeline.render_scale``); None: ``(width, height)``.
        lens_sigma: the lens's softness in focus, render px (:func:`~ifan.synth.rendering.render`).
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
    content: str = "classic"
    blur_space: str = "linear"
    pipeline: CameraPipeline | None = None
    out_size: tuple[int, int] | None = None
    lens_sigma: float = 0.0

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
            "content": self.content, "blur_space": self.blur_space,
            "pipeline": None if self.pipeline is None else self.pipeline.to_dict(),
            "out_size": None if self.out_size is None else list(self.out_size),
            "lens_sigma": self.lens_sigma,
        }




# ----------------------------------------------------------------------------------------------
# Sampling


def _choose(rng: np.random.Generator, mix: tuple[tuple[str, float], ...]) -> str:
    names, weights = zip(*mix)
    p = np.asarray(weights, dtype=np.float64)
    return str(names[rng.choice(len(names), p=p / p.sum())])


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
    n = log_uniform(rng, 1.4, 8.0)
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
    """Draw the kind, camera, aperture profile, noise, depth range and processing of one sample."""
    kind = _choose(rng, config.kinds)
    pipeline = sample_pipeline(rng) if config.pipeline_p > 0 and rng.random() < config.pipeline_p else None
    scale = pipeline.render_scale if pipeline is not None else 1.0
    width, height = int(round(config.width * scale)), int(round(config.height * scale))  # the render's size
    crop = None
    if kind == "stereo":
        crop = _stereo_crop(rng, width, height)
        inv_far, inv_near = _stereo_inv_depth_range(crop, width, height)
    elif kind in ("portrait", "night"):  # a subject close by, a background far behind it
        near = log_uniform(rng, 0.4, 3.0)
        far = near * log_uniform(rng, 3.0, 40.0)
        inv_far, inv_near = 1.0 / far, 1.0 / near
    else:
        near = log_uniform(rng, 0.5, 3.0)
        far = near * log_uniform(rng, 1.5, 20.0)
        inv_far, inv_near = 1.0 / far, 1.0 / near
    if kind in ("portrait", "night"):  # the subject (in focus, mostly) stands at 0.6 to 1 of the range
        focus = float(rng.uniform(0.6, 1.0)) if rng.random() < 0.85 else 0.0
    else:
        u = rng.random()
        focus = 0.0 if u < 0.15 else 1.0 if u < 0.4 else float(rng.uniform(0.0, 1.0))
    sharp = config.sharp_p > 0 and rng.random() < config.sharp_p
    if sharp:
        max_blur = float(rng.uniform(0.0, 0.6))
    else:
        max_blur = float(rng.uniform(0.25, max(config.max_blur, 0.25)))
    camera = sample_camera(rng, width, inv_far, inv_near, focus, max(max_blur * scale, 1e-3))
    family = _choose(rng, config.psf) if len(config.psf) > 1 else config.psf[0][0]
    profile = sample_profile(rng, family, config.cateye_p)
    noise = None
    if config.noise:
        noise = SensorNoise(full_well_e=log_uniform(rng, 500.0, 20000.0), read_noise_e=float(rng.uniform(1.0, 6.0)),
                            on_target=config.noise_on_target)
    seed = int(rng.integers(0, 2**63 - 1))
    blur_space = "gamma" if config.gamma_blur_p > 0 and rng.random() < config.gamma_blur_p else "linear"
    out_size = (config.width, config.height) if (width, height) != (config.width, config.height) else None
    lens_sigma = 0.0  # drawn last, so that every other draw is that of the same seed with soft_lens_p = 0
    if config.soft_lens_p > 0 and rng.random() < config.soft_lens_p:
        lens_sigma = float(rng.uniform(0.3, 1.0)) * scale
    spec = SceneSpec(kind, width, height, 0, seed, camera, profile, noise, inv_far, inv_near, focus, crop,
                     config.content, blur_space, pipeline, out_size, lens_sigma)
    return replace(spec, pad=kernel_half_size(spec.max_abs_coc, profile) + 1)  # room for the largest kernel


def _stereo_inv_depth_range(crop, width: int, height: int) -> tuple[float, float]:
    y, x, scale, _ = crop
    depth = load_stereo_motorcycle()[1]
    window = depth[int(y):int(math.ceil(y + height * scale)), int(x):int(math.ceil(x + width * scale))]
    return 1.0 / float(window.max()), 1.0 / float(window.min())
