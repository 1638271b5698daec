"""The C/L/R kernels: normalisation, symmetries, disparity and size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ifan.synth.psf import (LEFT_LANDS_LEFT_BEHIND_FOCUS, MIN_RADIUS, ApertureProfile, center_kernel, disparity_from_coc, disparity_per_coc,
                            dual_pixel_kernels, kernel_half_size, transmission)

PROFILES = [ApertureProfile(), ApertureProfile(edge=0.0, falloff=0.0, split=0.0),
            ApertureProfile(edge=0.2, falloff=-0.3, split=0.15), ApertureProfile(edge=0.05, falloff=0.5, split=0.02)]
DISPARITY_SIGN = -1.0 if LEFT_LANDS_LEFT_BEHIND_FOCUS else 1.0  # sign of x_L - x_R relative to coc
RADII = [-17.3, -6.0, -1.2, -0.4, 0.1, 0.5, 1.0, 2.7, 9.0, 20.0]


def _centroid_x(k: np.ndarray) -> float:
    half = k.shape[1] // 2
    return float((k.sum(axis=0) * np.arange(-half, half + 1)).sum() / k.sum())


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("radius", RADII)
def test_kernels_are_normalised_mirrored_and_average_to_the_centre_kernel(profile, radius):
    left, right = dual_pixel_kernels(radius, profile)
    assert left.dtype == np.float32 and left.shape == right.shape and left.shape[0] % 2 == 1
    assert left.min() >= 0 and right.min() >= 0
    assert left.sum() == pytest.approx(1.0, abs=1e-5) and right.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(right, left[:, ::-1], atol=1e-7)  # R is L mirrored in x
    np.testing.assert_allclose(left, left[::-1], atol=1e-7)  # symmetric in y
    np.testing.assert_allclose(center_kernel(radius, profile), 0.5 * (left + right), atol=1e-7)
    # crossing the focus plane swaps the views
    flipped_left, flipped_right = dual_pixel_kernels(-radius, profile)
    np.testing.assert_allclose(flipped_left, right, atol=1e-6)
    np.testing.assert_allclose(flipped_right, left, atol=1e-6)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("radius", RADII)
def test_kernel_centroids_are_the_documented_disparity(profile, radius):
    left, right = dual_pixel_kernels(radius, profile)
    measured = _centroid_x(left) - _centroid_x(right)
    # exact for smooth profiles; hard rims and splits are sampled at 1/8 px (or r/16), ~0.005 px
    assert measured == pytest.approx(float(disparity_from_coc(radius, profile)), abs=0.01)
    if abs(radius) >= MIN_RADIUS:
        # x_L - x_R < 0 behind the focus plane (L lands left), > 0 in front: a converged stereo pair
        assert np.sign(measured) == DISPARITY_SIGN * np.sign(radius)


def test_disparity_per_coc_is_that_of_two_half_discs():
    # centroids of the two halves of a uniform disc of radius r: +-4r/(3 pi)
    assert disparity_per_coc(ApertureProfile(edge=0.0, falloff=0.0, split=0.0)) == pytest.approx(8 / (3 * math.pi),
                                                                                                  abs=1e-3)
    assert 0.8 < disparity_per_coc(ApertureProfile()) < 0.87  # "about 0.85 r" with the default soft profile
    # a brighter rim pushes the centroids apart, a brighter centre pulls them together
    assert disparity_per_coc(ApertureProfile(falloff=-0.4)) > disparity_per_coc(ApertureProfile(falloff=0.4))


@pytest.mark.parametrize("radius", [1.5, 4.0, 12.5])
def test_centre_kernel_has_the_size_of_a_disc_of_that_radius(radius):
    k = center_kernel(radius, ApertureProfile(edge=0.0, falloff=0.0, split=0.0)).astype(np.float64)
    half = k.shape[0] // 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    second_moment = (k * (xx ** 2 + yy ** 2)).sum()
    # uniform disc: E[rho^2] = r^2 / 2; the pixel tent adds 1/6 px^2 per axis
    assert math.sqrt(2 * (second_moment - 1 / 3)) == pytest.approx(radius, rel=0.02)
    assert half == kernel_half_size(radius, ApertureProfile(edge=0.0, falloff=0.0, split=0.0))
    assert k[np.hypot(xx, yy) > radius + 1.5].max(initial=0.0) == 0  # nothing beyond the rim (plus the 1-px tent)


def test_zero_blur_is_a_delta():
    for radius in (0.0, MIN_RADIUS / 2, -MIN_RADIUS / 2):
        left, right = dual_pixel_kernels(radius)
        assert left.shape == (1, 1) and left[0, 0] == 1.0 and right[0, 0] == 1.0


def test_transmission_halves_sum_to_the_full_aperture():
    u = np.linspace(-1.2, 1.2, 97)
    ux, uy = np.meshgrid(u, u)
    for profile in PROFILES:
        full = transmission(ux, uy, profile, "center")
        np.testing.assert_allclose(transmission(ux, uy, profile, "left") + transmission(ux, uy, profile, "right"),
                                   full, atol=1e-12)
        assert full[np.hypot(ux, uy) > profile.extent + 1e-9].max(initial=0.0) == 0.0
    with pytest.raises(ValueError, match="unknown view"):
        transmission(ux, uy, ApertureProfile(), "top")


@pytest.mark.parametrize("kwargs", [dict(edge=1.0), dict(falloff=1.0), dict(split=-0.1)])
def test_invalid_profiles_are_refused(kwargs):
    with pytest.raises(ValueError):
        ApertureProfile(**kwargs)
