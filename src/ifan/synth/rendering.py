"""Occlusion-aware dual-pixel defocus rendering of layered scenes.

A :class:`Scene` is a stack of :class:`Layer` s ordered from far to near. Each layer is one
opaque surface (a fronto-parallel shape, a slanted plane, a depth slab of a photograph):
colour, coverage ``alpha`` and depth per pixel, with its full content, including what nearer
layers hide. All colours are *linear* light.

:func:`render` blurs every layer with its depth-dependent L and R kernels and composites the
blurred layers back to front with the "over" operator on premultiplied colour::

    out = out * (1 - blur(alpha)) + blur(alpha * colour)

For a sensor pixel, the fraction of a view's half-aperture cone blocked by a nearer layer is
exactly that layer's alpha blurred by that layer's kernel, so this is the physically right
occlusion for a sharp layer over a blurred one (no halo: the hidden background is known) and
for a blurred layer over a sharp one (the blurred foreground spills over the background). Where
both are blurred it treats the occluder's coverage as independent of which part of the aperture
the background's light came through; :func:`ifan.synth.raytrace.render_reference` traces every
ray and measures that approximation.

Within a layer the depth may vary (slanted planes); its signed blur radius is quantised on a
grid of radii (steps of ``max(0.5 px, 10 %)``) with linear ("hat") weights, and the bins are
*added*, since a surface does not occlude itself. Convolutions run in the Fourier domain on
the layer's bounding box; the bins of a layer share one inverse transform, and a small single
kernel (at most 7 x 7 pixels) is applied directly.

The centre view is ``C = (L + R) / 2`` (see :mod:`ifan.synth.psf`); sensor noise, if any, is
added to L and R before C is formed, so the relation holds for noisy images too.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.fft

from ifan.synth.optics import ThinLensCamera
from ifan.synth.psf import MIN_RADIUS, ApertureProfile, disparity_from_coc, dual_pixel_kernels, kernel_half_size

#: Quantisation of a layer's varying blur radius: grid steps of ``max(BIN_STEP_PX, BIN_STEP_REL * |r|)``.
BIN_STEP_PX = 0.5
BIN_STEP_REL = 0.1


@dataclass
class Layer:
    """One opaque surface of a scene.

    Attributes:
        rgb: ``(H, W, 3)`` float32 linear colour (not premultiplied); highlights may exceed 1.
        alpha: ``(H, W)`` float32 coverage in [0, 1].
        depth: ``(H, W)`` float32 depth in metres, positive everywhere (only read where ``alpha > 0``
            by :func:`render`; :func:`~ifan.synth.raytrace.render_reference` interpolates it).
    """

    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray

    def __post_init__(self) -> None:
        h, w = self.alpha.shape
        if self.rgb.shape != (h, w, 3) or self.depth.shape != (h, w):
            raise ValueError(f"layer arrays disagree: rgb {self.rgb.shape}, alpha {self.alpha.shape}, "
                             f"depth {self.depth.shape}; expected (H, W, 3), (H, W), (H, W)")


@dataclass
class Scene:
    """Layers ordered far to near, on a canvas ``pad`` pixels larger than the image on each side.

    The margin lets light from just outside the frame blur into it; it should be at least the
    largest kernel half-size (:func:`ifan.synth.psf.kernel_half_size`).
    """

    layers: list[Layer]
    pad: int = 0

    @property
    def canvas_shape(self) -> tuple[int, int]:
        return self.layers[0].alpha.shape

    @property
    def image_shape(self) -> tuple[int, int]:
        h, w = self.canvas_shape
        return h - 2 * self.pad, w - 2 * self.pad


@dataclass
class DualPixelImages:
    """A rendered dual-pixel sample (all arrays at the image resolution).

    Attributes:
        left, right, center: ``(H, W, 3)`` float32 linear, in [0, 1] (clipped like a sensor).
        target: ``(H, W, 3)`` float32 linear all-in-focus image in [0, 1].
        depth: ``(H, W)`` float32 depth (m) of the visible surface.
        coc: ``(H, W)`` float32 signed blur radius (px): > 0 behind the focus plane.
        disparity: ``(H, W)`` float32 L-R disparity ``x_L - x_R`` (px), ``-kappa * coc``: > 0 in front of
            the focus plane, < 0 behind it.
        encoding: ``"linear"`` (the renderer's output) or ``"srgb"`` (images developed by
            :func:`ifan.synth.camera.develop`: sRGB-encoded values, as saved).
    """

    left: np.ndarray
    right: np.ndarray
    center: np.ndarray
    target: np.ndarray
    depth: np.ndarray
    coc: np.ndarray
    disparity: np.ndarray
    encoding: str = "linear"


@dataclass(frozen=True)
class SensorNoise:
    """Shot and read noise of each dual-pixel photodiode.

    Attributes:
        full_well_e: electrons collected by one *pixel* (both photodiodes) at value 1.0; each
            photodiode collects half.
        read_noise_e: standard deviation of each photodiode's read noise, in electrons.
        on_target: add C's noise field to the all-in-focus target too, so that a model trained on
            the pair learns to undo defocus, not to denoise (and is not taught the mean shift that
            clipping noisy dark values at 0 puts into C alone).
    """

    full_well_e: float
    read_noise_e: float
    on_target: bool = False

    def __post_init__(self) -> None:
        if not self.full_well_e > 0 or not self.read_noise_e >= 0:
            raise ValueError(f"SensorNoise needs full_well_e > 0 and read_noise_e >= 0, got {self}")

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy version of one photodiode's linear image (float32, not clipped)."""
        scale = self.full_well_e / 2.0
        electrons = rng.poisson(np.clip(image, 0.0, None).astype(np.float64) * scale).astype(np.float64)
        electrons += rng.normal(0.0, self.read_noise_e, size=image.shape)
        return (electrons / scale).astype(np.float32)


def radius_grid(max_abs: float) -> np.ndarray:
    """The quantisation grid of signed blur radii covering ``[-max_abs, max_abs]`` (sorted, contains 0)."""
    pos = [0.0]
    while pos[-1] < max_abs:
        pos.append(pos[-1] + max(BIN_STEP_PX, BIN_STEP_REL * pos[-1]))
    pos = np.asarray(pos)
    return np.concatenate([-pos[:0:-1], pos])


def _bins(radius: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Split the radii of a layer's pixels into ``(bin radius, weight per pixel)`` with hat weights."""
    lo, hi = float(radius.min()), float(radius.max())
    if hi - lo < 1e-3:
        return [(0.5 * (lo + hi), np.ones_like(radius))]
    grid = radius_grid(max(abs(lo), abs(hi)))
    i = np.clip(np.searchsorted(grid, radius, side="right") - 1, 0, grid.size - 2)
    t = ((radius - grid[i]) / (grid[i + 1] - grid[i])).astype(np.float32)
    out = []
    for j in range(int(i.min()), int(i.max()) + 2):
        w = np.where(i == j, 1.0 - t, 0.0) + np.where(i + 1 == j, t, 0.0)
        if np.any(w > 0):
            out.append((float(grid[j]), w.astype(np.float32)))
    return out


def _kernel_spectra(left: np.ndarray, right: np.ndarray, mirrored: bool,
                    shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """rfft2 of the L and R kernels, centred at the origin of a ``shape`` grid.

    When R is L mirrored in x (``mirrored``), ``R(ky, kx) = conj(L(-ky, kx))``: R costs no transform.
    """
    half = left.shape[0] // 2
    idx = np.arange(-half, half + 1)
    spectra = []
    for kernel in (left,) if mirrored else (left, right):
        k = np.zeros(shape, np.float32)
        k[np.ix_(idx % shape[0], idx % shape[1])] = kernel
        spectra.append(scipy.fft.rfft2(k))
    if mirrored:
        spectra.append(np.conj(spectra[0][(-np.arange(shape[0])) % shape[0]]))
    return spectra[0], spectra[1]


def _blur_layer(layer: Layer, camera: ThinLensCamera, profile: ApertureProfile, pad: int):
    """Blur one layer with its L and R kernels.

    Returns ``(y0, x0, left, right)`` with ``left``/``right`` of shape ``(4, h, w)`` (premultiplied
    RGB and alpha) placed at canvas offset ``(y0, x0)`` (possibly negative), or ``None`` if empty.
    """
    alpha = layer.alpha
    rows = np.flatnonzero(alpha.max(axis=1) > 0)
    if rows.size == 0:
        return None
    cols = np.flatnonzero(alpha.max(axis=0) > 0)
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    a = alpha[y0:y1, x0:x1]
    support = a > 0
    bins = _bins(camera.coc_radius_px(layer.depth[y0:y1, x0:x1][support]))
    premult = np.concatenate([(layer.rgb[y0:y1, x0:x1] * a[..., None]).transpose(2, 0, 1), a[None]], axis=0)
    half = max(kernel_half_size(r, profile) for r, _ in bins)
    if half == 0:
        return y0, x0, premult, premult
    if len(bins) == 1 and half <= 3:  # small single kernel: direct convolution is cheaper
        left_k, right_k = dual_pixel_kernels(bins[0][0], profile)
        padded = np.pad(premult, ((0, 0), (half, half), (half, half))).transpose(1, 2, 0)
        out = [cv2.filter2D(padded, -1, k[::-1, ::-1].copy(), borderType=cv2.BORDER_CONSTANT).transpose(2, 0, 1)
               for k in (left_k, right_k)]
        return y0 - half, x0 - half, out[0], out[1]
    # Linear convolution: a margin of `half` zeros around the layer. Along an axis that the layer
    # spans entirely, a circular one is enough: what wraps around lands in the canvas margin.
    hc, wc = alpha.shape
    my = 0 if (y0 == 0 and y1 == hc and pad >= half) else half
    mx = 0 if (x0 == 0 and x1 == wc and pad >= half) else half
    h, w = a.shape[0] + 2 * my, a.shape[1] + 2 * mx
    shape = (scipy.fft.next_fast_len(h, real=True), scipy.fft.next_fast_len(w, real=True))
    x = np.zeros((4,) + shape, np.float32)
    inner = x[:, my:my + a.shape[0], mx:mx + a.shape[1]]
    acc_l = acc_r = None
    weight = np.zeros(a.shape, np.float32)
    for r, w_support in bins:
        if len(bins) == 1:
            inner[:] = premult
        else:
            weight[support] = w_support
            np.multiply(premult, weight, out=inner)
        spec = scipy.fft.rfft2(x)
        if abs(r) < MIN_RADIUS:
            add_l = add_r = spec
        else:
            spec_l, spec_r = _kernel_spectra(*dual_pixel_kernels(r, profile), profile.mirror_symmetric, shape)
            add_l, add_r = spec * spec_l, spec * spec_r
        if acc_l is None:
            acc_l, acc_r = add_l, (add_r if add_r is not add_l else add_r.copy())
        else:
            acc_l += add_l
            acc_r += add_r
    left = scipy.fft.irfft2(acc_l, s=shape)[:, :h, :w]
    right = scipy.fft.irfft2(acc_r, s=shape)[:, :h, :w]
    return y0 - my, x0 - mx, left, right


def composite_sharp(scene: Scene) -> np.ndarray:
    """The all-in-focus (pinhole) image of the scene's canvas: ``(Hc, Wc, 3)`` float32 linear, not clipped."""
    h, w = scene.canvas_shape
    out = np.zeros((h, w, 3), np.float32)
    for layer in scene.layers:
        a = layer.alpha[..., None]
        out *= 1.0 - a
        out += layer.rgb * a
    return out


def visible_depth(scene: Scene) -> np.ndarray:
    """Depth (m) of the nearest layer covering each canvas pixel at least half, ``(Hc, Wc)`` float32."""
    depth = scene.layers[0].depth.astype(np.float32).copy()
    for layer in scene.layers[1:]:
        np.copyto(depth, layer.depth, where=layer.alpha >= 0.5)
    return depth


def finish_views(scene: Scene, camera: ThinLensCamera, profile: ApertureProfile, left: np.ndarray, right: np.ndarray,
                 noise: SensorNoise | None, rng: np.random.Generator | None, lens_sigma: float = 0.0
                 ) -> DualPixelImages:
    """From the L and R views of the canvas ``(Hc, Wc, 3)`` to the images of a sample: soften
    (``lens_sigma``), crop the canvas margin, add noise, clip and form C and the maps."""
    p = scene.pad
    h, w = scene.image_shape
    crop = (slice(p, p + h), slice(p, p + w))
    target = composite_sharp(scene)
    if lens_sigma > 0:  # the lens is soft in focus too: every image, the target included, before the sensor
        left, right, target = (cv2.GaussianBlur(np.ascontiguousarray(x), (0, 0), lens_sigma,
                                                borderType=cv2.BORDER_REFLECT_101)
                               for x in (left, right, target))
    left, right, target = left[crop], right[crop], target[crop]
    if noise is not None:
        if rng is None:
            raise ValueError("sensor noise needs a random generator (rng)")
        clean_center = 0.5 * (left + right)
        left, right = noise.apply(left, rng), noise.apply(right, rng)
        if noise.on_target:
            target = target + (0.5 * (left + right) - clean_center)
    left, right = np.clip(left, 0.0, 1.0), np.clip(right, 0.0, 1.0)
    depth = visible_depth(scene)[crop]
    coc = camera.coc_radius_px(depth)
    return DualPixelImages(
        left=left, right=right, center=(0.5 * (left + right)).astype(np.float32),
        target=np.clip(target, 0.0, 1.0).astype(np.float32), depth=np.ascontiguousarray(depth),
        coc=coc, disparity=disparity_from_coc(coc, profile))


def render(scene: Scene, camera: ThinLensCamera, profile: ApertureProfile = ApertureProfile(),
           noise: SensorNoise | None = None, rng: np.random.Generator | None = None,
           lens_sigma: float = 0.0) -> DualPixelImages:
    """Render the L, R and C views, the all-in-focus target and the depth/blur/disparity maps.

    Args:
        scene: layers far to near (linear colour), canvas with a margin of ``scene.pad`` px.
        camera: the thin-lens camera (sets each pixel's signed blur radius from its depth).
        profile: the aperture's shape (PSF).
        noise: optional sensor noise, added to L and R (then ``C = (L + R) / 2``).
        rng: random generator for the noise.
        lens_sigma: the lens's softness in focus (residual aberrations, diffraction, the sensor's
            anti-aliasing filter): a Gaussian of this standard deviation (px) on every image, the
            all-in-focus target included, before the noise. 0: a lens that is perfectly sharp in focus.

    Returns:
        :class:`DualPixelImages` at the image size (canvas minus the margin).
    """
    h, w = scene.canvas_shape
    out_l = np.zeros((3, h, w), np.float32)
    out_r = np.zeros((3, h, w), np.float32)
    for layer in scene.layers:
        blurred = _blur_layer(layer, camera, profile, scene.pad)
        if blurred is None:
            continue
        y0, x0, bl, br = blurred
        _composite_over(out_l, y0, x0, bl)
        _composite_over(out_r, y0, x0, br)
    return finish_views(scene, camera, profile, out_l.transpose(1, 2, 0), out_r.transpose(1, 2, 0), noise, rng,
                   lens_sigma)


def _composite_over(out: np.ndarray, y0: int, x0: int, blurred: np.ndarray) -> None:
    """``out = out * (1 - A) + P`` where ``blurred`` = (P, A) (4, h, w) sits at canvas offset (y0, x0)."""
    _, hc, wc = out.shape
    _, h, w = blurred.shape
    cy0, cx0, cy1, cx1 = max(y0, 0), max(x0, 0), min(y0 + h, hc), min(x0 + w, wc)
    if cy0 >= cy1 or cx0 >= cx1:
        return
    part = blurred[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    region = out[:, cy0:cy1, cx0:cx1]
    region *= 1.0 - np.clip(part[3], 0.0, 1.0)
    region += np.clip(part[:3], 0.0, None)
