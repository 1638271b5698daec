"""Thin-lens optics: the signed circle of confusion of a scene point, in output pixels.

A thin lens of focal length ``f`` and f-number ``N`` (aperture diameter ``A = f / N``) focused
at distance ``S`` images a point at depth ``Z`` as a disc of diameter::

    c = A * f / (S - f) * (Z - S) / Z          (on the sensor, same unit as f)

``c`` is *signed*: positive behind the focus plane (``Z > S``), negative in front of it
(``Z < S``), zero on it. ifan works with the signed blur *radius in pixels of the output
image*, ``coc = c / (2 * pixel_pitch)``, where ``pixel_pitch`` is the pitch of an output pixel
(the sensor pitch times the downscaling from sensor to output). Since::

    coc = K * S * (1/S - 1/Z),    K = f**2 / (2 * N * (S - f) * pixel_pitch)

the blur radius is affine in inverse depth: ``|coc|`` grows linearly with ``|1/Z - 1/S|`` and
tends to ``K`` (the radius at infinity) for distant points.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ThinLensCamera:
    """A thin-lens camera, described at the resolution of the rendered images.

    Attributes:
        focal_length_mm: focal length ``f`` in millimetres (> 0).
        f_number: ``N = f / A`` (> 0).
        focus_distance_m: distance ``S`` of the plane in focus, in metres (``S > f``).
        pixel_pitch_um: size of one *output* pixel on the sensor, in micrometres (> 0).
    """

    focal_length_mm: float
    f_number: float
    focus_distance_m: float
    pixel_pitch_um: float

    def __post_init__(self) -> None:
        for name in ("focal_length_mm", "f_number", "focus_distance_m", "pixel_pitch_um"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ThinLensCamera.{name} must be a positive finite number, got {value}")
        if self.focus_distance_m * 1000.0 <= self.focal_length_mm:
            raise ValueError(f"the focus distance ({self.focus_distance_m} m) must exceed the focal length "
                             f"({self.focal_length_mm} mm)")

    @property
    def aperture_mm(self) -> float:
        """Aperture diameter ``A = f / N`` in millimetres."""
        return self.focal_length_mm / self.f_number

    @property
    def focal_length_px(self) -> float:
        """Focal length in output pixels (``f / pixel_pitch``): sets the field of view."""
        return self.focal_length_mm * 1000.0 / self.pixel_pitch_um

    @property
    def radius_at_infinity_px(self) -> float:
        """``K``: the blur radius (px) of a point at infinite depth."""
        f, s = self.focal_length_mm, self.focus_distance_m * 1000.0
        return self.aperture_mm * f / (s - f) / 2.0 / (self.pixel_pitch_um / 1000.0)

    def coc_radius_px(self, depth_m: np.ndarray | float) -> np.ndarray:
        """Signed circle-of-confusion radius in output pixels.

        Args:
            depth_m: depth ``Z`` in metres (> 0), any shape.

        Returns:
            float32 array of the same shape: ``> 0`` behind the focus plane, ``< 0`` in front.
        """
        z = np.asarray(depth_m, dtype=np.float64)
        if np.any(~(z > 0)):
            raise ValueError("depths must be positive (metres)")
        return (self.radius_at_infinity_px * (1.0 - self.focus_distance_m / z)).astype(np.float32)

    def depth_from_coc(self, coc_px: np.ndarray | float) -> np.ndarray:
        """Inverse of :meth:`coc_radius_px`: the depth (m) whose signed blur radius is ``coc_px``.

        Radii ``>= K`` (the radius at infinity) have no finite depth and raise ``ValueError``.
        """
        r = np.asarray(coc_px, dtype=np.float64)
        k = self.radius_at_infinity_px
        if np.any(r >= k):
            raise ValueError(f"blur radii >= {k:.3f} px (the radius at infinity) have no finite depth")
        return (self.focus_distance_m / (1.0 - r / k)).astype(np.float32)

    def to_dict(self) -> dict[str, float]:
        """The four parameters plus the derived aperture and radius at infinity (for manifests)."""
        d = {k: float(v) for k, v in asdict(self).items()}
        d.update(aperture_mm=self.aperture_mm, radius_at_infinity_px=self.radius_at_infinity_px)
        return d
