"""Point spread functions of the centre (C), left (L) and right (R) dual-pixel views.

The PSF of a point with signed blur radius ``r`` (px, see :mod:`ifan.synth.optics`) is the
aperture's transmission scaled by ``r``: light through the normalised aperture point ``u``
(``|u| <= 1``) lands at the offset ``d = r * u`` from the point's sharp image. A negative
``r`` (in front of the focus plane) flips the picture through the centre: that is why the
L and R kernels trade sides across the focus plane.

Aperture transmission (:class:`ApertureProfile`), with ``rho = |u|``:

* rim: a linear ramp of width ``edge`` (fraction of the radius) centred on the aperture's outline:
  the unit circle, or with ``blades = n`` (5 to 9) a regular n-gon inscribed in it (straight
  diaphragm blades, rotated by ``rotation``);
* radial intensity ``1 - falloff * rho**2`` (``falloff > 0``: brighter centre, soft-centre discs of
  under-corrected spherical aberration; ``< 0``: brighter rim, over-corrected);
* cat's eye (``cateye = d > 0``): mechanical vignetting towards the frame edges cuts the aperture
  with a second unit circle whose centre is ``d`` away in direction ``cateye_angle``; the lens-shaped
  intersection is re-centred on the origin, so that defocus does not shift the image;
* near-Gaussian (``gauss = g > 0``): the transmission is blended with ``exp(-2 rho**2)`` (a Gaussian
  of standard deviation half the radius) by ``g``; ``g = 1`` is a Gaussian truncated at 1.5 radii;
* the dual-pixel split: the right photodiode weighs ``u`` by ``w(u_x) = clip(1/2 + u_x / (2 split), 0, 1)``,
  the left one by ``w(-u_x)``. Since ``w(t) + w(-t) = 1``, the two halves add up to the full aperture.

:data:`PSF_FAMILIES` names the documented mixtures of these parameters that ``ifan synth`` draws
from (:func:`sample_profile`).

Kernels are the transmission integrated against the pixel tent (linear interpolation between
pixel centres), by bilinear splatting of fine sub-samples: a kernel's sum and centroid are those
of the continuous PSF at every radius, sub-pixel blurs shift the image by the right sub-pixel
amount, and a radius of 0 is exactly a delta.

Conventions:

* ``L`` is the image through the left half of the aperture (left as the photographer sees
  the scene, in upright image coordinates). For a point *behind* the focus plane (``r > 0``)
  that light lands on the left (``-x``) of the point's sharp image, for a point in front on
  the right. Hence the disparity ``x_L - x_R`` (centroid of the L kernel minus that of the R
  kernel) is ``-kappa * r``: negative behind the focus plane, positive in front, zero on it,
  the sign of a stereo pair (left camera on the left) converged on the focus plane. This is
  the orientation of DPDD-style Canon data as far as public sources show (see docs/synth.md);
  :data:`LEFT_LANDS_LEFT_BEHIND_FOCUS` records it.
* Each view's kernel sums to 1 (same exposure as C), and ``C = (L + R) / 2`` exactly: a DP
  pixel's value is the sum of its two photodiodes, each of which receives half the light.
* ``R`` is ``L`` mirrored in x when the aperture is mirror-symmetric about the vertical axis
  (:attr:`ApertureProfile.mirror_symmetric`: round, or polygons and cat's eyes aligned with it);
  otherwise both are computed.
* The disparity is linear in the blur: ``|disparity| = kappa * |r|`` with ``kappa`` given by
  :func:`disparity_per_coc` (``8 / (3 pi) ~ 0.85`` for a uniform disc with a hard split: the
  centroids of two half discs of radius ``r`` are ``2 * 4 r / (3 pi)`` apart).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

#: The convention above: behind the focus plane, the L view's light lands left of the sharp image.
#: (A source constant: kernels are cached, so change it here, not at run time.)
LEFT_LANDS_LEFT_BEHIND_FOCUS = True

#: Radii (px) below this are rendered as a delta (the shift they would cause is < 0.02 px).
MIN_RADIUS = 0.02


@dataclass(frozen=True)
class ApertureProfile:
    """Shape of the aperture's transmission (the normalised PSF).

    Attributes:
        edge: width of the rim's soft edge as a fraction of the blur radius, in [0, 1).
        falloff: radial intensity ``1 - falloff * rho**2``, in (-1, 1).
        split: half-width of the soft L/R crossover as a fraction of the radius, in [0, 1].
        blades: 0 for a round aperture, or the number of straight diaphragm blades (3 to 16).
        rotation: angle of the polygon (radians).
        cateye: offset of the vignetting circle as a fraction of the radius, in [0, 1.5]; 0: none.
        cateye_angle: direction of that offset (radians; towards the frame centre).
        gauss: weight of the Gaussian blended into the transmission, in [0, 1].
    """

    edge: float = 0.1
    falloff: float = 0.15
    split: float = 0.08
    blades: int = 0
    rotation: float = 0.0
    cateye: float = 0.0
    cateye_angle: float = 0.0
    gauss: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.edge < 1.0:
            raise ValueError(f"ApertureProfile.edge must be in [0, 1), got {self.edge}")
        if not -1.0 < self.falloff < 1.0:
            raise ValueError(f"ApertureProfile.falloff must be in (-1, 1), got {self.falloff}")
        if not 0.0 <= self.split <= 1.0:
            raise ValueError(f"ApertureProfile.split must be in [0, 1], got {self.split}")
        if not (self.blades == 0 or 3 <= self.blades <= 16):
            raise ValueError(f"ApertureProfile.blades must be 0 (round) or 3 to 16, got {self.blades}")
        if not 0.0 <= self.cateye <= 1.5:
            raise ValueError(f"ApertureProfile.cateye must be in [0, 1.5], got {self.cateye}")
        if not 0.0 <= self.gauss <= 1.0:
            raise ValueError(f"ApertureProfile.gauss must be in [0, 1], got {self.gauss}")

    @property
    def aperture_extent(self) -> float:
        """Radius of the support in aperture coordinates (before a cat's eye is re-centred)."""
        return max(1.0 + self.edge / 2.0, GAUSS_EXTENT if self.gauss > 0 else 0.0)

    @property
    def extent(self) -> float:
        """Radius of the transmission's support in units of the blur radius (rim included)."""
        if self.cateye == 0:
            return self.aperture_extent
        return self.aperture_extent + math.hypot(*_cateye_centroid(self))

    @property
    def mirror_symmetric(self) -> bool:
        """True when the transmission is symmetric under ``x -> -x`` (then R is L mirrored)."""
        def on_axis(angle: float, period: float) -> bool:  # angle is a multiple of period / 2 (mod period)
            t = (angle / (period / 2.0)) % 1.0
            return min(t, 1.0 - t) < 1e-9

        polygon_ok = self.blades == 0 or on_axis(self.rotation - math.pi / 2, 2 * math.pi / self.blades)
        cateye_ok = self.cateye == 0 or on_axis(self.cateye_angle - math.pi / 2, 2 * math.pi)
        return polygon_ok and cateye_ok

    def to_dict(self) -> dict[str, float]:
        return {k: (int(v) if k == "blades" else float(v)) for k, v in asdict(self).items()}


#: Support of the near-Gaussian part, in radii (its weight there is exp(-4.5) ~ 1 %).
GAUSS_EXTENT = 1.5


def _outline_rho(ux: np.ndarray, uy: np.ndarray, profile: ApertureProfile) -> np.ndarray:
    """Normalised distance to the aperture's outline: 1 on the circle, or on the n-gon inscribed in it."""
    if profile.blades == 0:
        return np.sqrt(ux * ux + uy * uy)
    n = profile.blades
    half = math.pi / n
    normals = profile.rotation + half + 2 * half * np.arange(n)  # edge normals, vertices at rotation + k 2pi/n
    d = np.max([ux * math.cos(a) + uy * math.sin(a) for a in normals], axis=0)
    return d / math.cos(half)


def _rim(rho: np.ndarray, edge: float) -> np.ndarray:
    """1 inside, 0 outside the outline ``rho = 1``, with a linear ramp of width ``edge`` across it."""
    if edge > 0:
        return np.clip((1.0 - rho) / edge + 0.5, 0.0, 1.0)
    return np.where(rho < 1.0, 1.0, np.where(rho == 1.0, 0.5, 0.0))


def transmission(ux: np.ndarray, uy: np.ndarray, profile: ApertureProfile, view: str = "center") -> np.ndarray:
    """Aperture transmission at normalised aperture coordinates ``(ux, uy)``.

    Args:
        ux, uy: broadcastable arrays; ``|u| = 1`` is the rim.
        profile: the aperture's shape.
        view: ``"center"`` (full aperture), ``"left"`` or ``"right"`` (a DP photodiode).

    Returns:
        float64 array in [0, 1]; ``left + right == center`` everywhere.
    """
    if profile.cateye > 0:  # aperture coordinates: the kernel's origin is the vignetted pupil's centroid
        cx, cy = _cateye_centroid(profile)
        ux, uy = ux + cx, uy + cy
    return _aperture(ux, uy, profile, view)


@functools.lru_cache(maxsize=256)
def _cateye_centroid(profile: ApertureProfile) -> tuple[float, float]:
    """Centroid (aperture coordinates) of the C kernel of a vignetted aperture: the mean of the two
    views, each normalised to the same exposure (the halves of a vignetted pupil get unequal light)."""
    n = 512
    c = (np.arange(n) + 0.5) / n * 2 * profile.aperture_extent - profile.aperture_extent
    t = sum(v / v.sum() for v in (_aperture(c[None, :], c[:, None], profile, view) for view in ("left", "right")))
    return float((t * c[None, :]).sum() / t.sum()), float((t * c[:, None]).sum() / t.sum())


def _aperture(ux: np.ndarray, uy: np.ndarray, profile: ApertureProfile, view: str) -> np.ndarray:
    """:func:`transmission` in aperture coordinates (the unvignetted aperture centred on the origin)."""
    rho2 = ux * ux + uy * uy
    t = _rim(_outline_rho(ux, uy, profile), profile.edge)
    if profile.cateye > 0:
        ox, oy = profile.cateye * math.cos(profile.cateye_angle), profile.cateye * math.sin(profile.cateye_angle)
        t = t * _rim(np.sqrt((ux - ox) ** 2 + (uy - oy) ** 2), profile.edge)
    t = t * np.maximum(1.0 - profile.falloff * rho2, 0.0)
    if profile.gauss > 0:
        gauss = np.exp(-2.0 * rho2) * (rho2 <= GAUSS_EXTENT ** 2)
        t = (1.0 - profile.gauss) * t + profile.gauss * gauss
    if view == "center":
        return t
    if view not in ("left", "right"):
        raise ValueError(f"unknown view {view!r}; expected one of 'center', 'left', 'right'")
    x = -ux if (view == "left") == LEFT_LANDS_LEFT_BEHIND_FOCUS else ux
    if profile.split > 0:
        w = np.clip(0.5 + x / (2.0 * profile.split), 0.0, 1.0)
    else:
        w = np.where(x > 0, 1.0, np.where(x == 0, 0.5, 0.0))
    return t * w


def kernel_half_size(radius: float, profile: ApertureProfile) -> int:
    """Half-size ``R`` of the ``(2R+1, 2R+1)`` kernel of a blur of radius ``|radius|`` px."""
    r = abs(float(radius))
    if r < MIN_RADIUS:
        return 0
    return max(1, int(math.ceil(r * profile.extent)))


def _tent_splat(t: np.ndarray, c: np.ndarray, half: int, axis: int) -> np.ndarray:
    """Split the samples of ``t`` at the sorted coordinates ``c`` (px) linearly between their two pixels.

    Reduces ``axis`` of ``t`` (length ``len(c)``) to ``2*half+1`` pixels (offsets ``-half..half``).
    """
    i0 = np.floor(c).astype(np.int64)
    f = c - i0
    starts = np.flatnonzero(np.r_[True, i0[1:] != i0[:-1]])
    pix = i0[starts] + half
    shape = [1, 1]
    shape[axis] = c.size
    lo = np.add.reduceat(t * (1.0 - f).reshape(shape), starts, axis=axis)
    hi = np.add.reduceat(t * f.reshape(shape), starts, axis=axis)
    out_shape = list(t.shape)
    out_shape[axis] = 2 * half + 3  # room for the +1 neighbour of the last pixel
    out = np.zeros(out_shape)
    if axis == 1:
        out[:, pix] += lo
        out[:, pix + 1] += hi
        return out[:, : 2 * half + 1]
    out[pix] += lo
    out[pix + 1] += hi
    return out[: 2 * half + 1]


@functools.lru_cache(maxsize=1024)
def _dp_kernels_cached(radius: float, profile: ApertureProfile) -> tuple[np.ndarray, np.ndarray]:
    half = kernel_half_size(radius, profile)
    if half == 0:
        delta = np.ones((1, 1), np.float32)
        delta.setflags(write=False)
        return delta, delta
    # The continuous PSF integrated against the pixel tent (bilinear splatting of fine sub-samples):
    # this keeps each kernel's sum and centroid exact at any radius and is a delta at radius 0.
    n = int(min(128, max(8, math.ceil(16.0 / abs(radius)))))  # sub-samples per px: <= 1/8 px and <= r/16
    support = abs(radius) * profile.extent
    count = int(math.ceil(support * n))
    c = (np.arange(-count, count) + 0.5) / n  # symmetric about 0
    u = c / radius  # a negative radius flips the aperture through the centre
    out = []
    for view in ("left", "right"):
        t = transmission(u[None, :], u[:, None], profile, view)
        k = _tent_splat(_tent_splat(t, c, half, axis=1), c, half, axis=0)
        k = (k / k.sum()).astype(np.float32)
        k.setflags(write=False)
        out.append(k)
    return out[0], out[1]


def dual_pixel_kernels(radius: float, profile: ApertureProfile = ApertureProfile()) -> tuple[np.ndarray, np.ndarray]:
    """The L and R kernels of a point with signed blur radius ``radius`` (px).

    Args:
        radius: signed circle-of-confusion radius in output pixels.
        profile: the aperture's shape.

    Returns:
        ``(left, right)``: float32 ``(2R+1, 2R+1)`` arrays (read-only, cached), each summing to 1,
        indexed ``[y, x]`` with the point at the centre; ``right`` is ``left`` mirrored in x,
        and ``dual_pixel_kernels(-r)`` is ``dual_pixel_kernels(r)`` with the views swapped.
    """
    return _dp_kernels_cached(round(float(radius), 4), profile)


def center_kernel(radius: float, profile: ApertureProfile = ApertureProfile()) -> np.ndarray:
    """The C (full-aperture) kernel, ``(L + R) / 2``: a soft disc of radius ``|radius|`` px summing to 1."""
    left, right = dual_pixel_kernels(radius, profile)
    return 0.5 * (left + right)


@functools.lru_cache(maxsize=64)
def disparity_per_coc(profile: ApertureProfile = ApertureProfile()) -> float:
    """``kappa``: size of the L-R disparity per pixel of blur radius (``|disparity| = kappa * |coc|``).

    It is the distance in x between the centroids of the left and right transmissions in units of
    the radius (``8 / (3 pi) = 0.849`` for a uniform disc split sharply in two).
    """
    n = 1024
    extent = profile.extent
    c = (np.arange(n) + 0.5) / n * 2 * extent - extent
    centroids = []
    for view in ("left", "right"):
        t = transmission(c[None, :], c[:, None], profile, view)
        centroids.append(float((t * c[None, :]).sum() / t.sum()))
    return abs(centroids[0] - centroids[1])


def disparity_from_coc(coc: np.ndarray | float, profile: ApertureProfile = ApertureProfile()) -> np.ndarray:
    """L-R disparity (px, ``x_L - x_R``) of points with signed blur radius ``coc`` (px).

    Returns a float32 array of ``coc``'s shape: ``-kappa * coc`` (positive in front of the focus
    plane, negative behind it).
    """
    sign = -1.0 if LEFT_LANDS_LEFT_BEHIND_FOCUS else 1.0
    return (sign * disparity_per_coc(profile) * np.asarray(coc, dtype=np.float64)).astype(np.float32)


#: The aperture families ``ifan synth`` draws from, with the ranges of their parameters (see
#: :func:`sample_profile`): ``disc`` soft-edged discs with mild falloff (the original profile),
#: ``polygon`` 5 to 9 straight blades, ``rim`` bright-rimmed discs (over-corrected spherical
#: aberration), ``soft`` soft-centred discs (under-corrected), ``gaussian`` near-Gaussian blur.
PSF_FAMILIES = ("disc", "polygon", "rim", "soft", "gaussian")


def sample_profile(rng: np.random.Generator, family: str = "disc", cateye_p: float = 0.0) -> ApertureProfile:
    """Draw an aperture profile of ``family``; with probability ``cateye_p`` add cat's-eye vignetting.

    ``disc`` draws exactly as ifan 0.1 did (edge 0.03-0.2, falloff -0.15-0.35, split 0.03-0.15), so
    datasets made without the new options are unchanged.
    """
    if family not in PSF_FAMILIES:
        raise ValueError(f"unknown PSF family {family!r}; expected one of {PSF_FAMILIES}")
    split = None
    if family == "disc":
        edge, falloff = rng.uniform(0.03, 0.2), rng.uniform(-0.15, 0.35)
        split = rng.uniform(0.03, 0.15)
        kwargs = {}
    elif family == "polygon":
        edge, falloff = rng.uniform(0.02, 0.12), rng.uniform(-0.15, 0.3)
        kwargs = dict(blades=int(rng.integers(5, 10)), rotation=float(rng.uniform(0.0, 2 * math.pi)))
    elif family == "rim":
        edge, falloff, kwargs = rng.uniform(0.02, 0.1), rng.uniform(-0.9, -0.3), {}
    elif family == "soft":
        edge, falloff, kwargs = rng.uniform(0.25, 0.7), rng.uniform(0.4, 0.9), {}
    else:  # gaussian
        edge, falloff, kwargs = rng.uniform(0.1, 0.5), rng.uniform(0.0, 0.5), dict(gauss=float(rng.uniform(0.7, 1.0)))
    if split is None:
        split = rng.uniform(0.03, 0.2)
    if family != "gaussian" and cateye_p > 0 and rng.random() < cateye_p:
        kwargs.update(cateye=float(rng.uniform(0.2, 0.9)), cateye_angle=float(rng.uniform(0.0, 2 * math.pi)))
    return ApertureProfile(edge=float(edge), falloff=float(falloff), split=float(split), **kwargs)

