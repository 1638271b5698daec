"""The C/L/R kernels: normalisation, symmetries, disparity and size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ifan.synth.psf import (MIN_RADIUS, ApertureProfile, center_kernel, disparity_from_coc, disparity_per_coc,
                            dual_pixel_kernels, kernel_half_size, transmission)

PROFILES = [ApertureProfile(), ApertureProfile(edge=0.0, falloff=0.0, split=0.0),
            ApertureProfile(edge=0.2, falloff=-0.3, split=0.15), ApertureProfile(edge=0.05, falloff=0.5, split=0.02)]
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
        # x_L - x_R < 0 behind the focus plane (radius > 0: L lands left), > 0 in front: a converged stereo pair
        assert np.sign(measured) == (-1.0 if radius > 0 else 1.0)


def test_a_point_behind_the_focus_plane_lands_left_in_the_left_view():
    # Worked by hand: a uniform disc of radius 9 px split at its vertical diameter. The left half
    # disc's centroid is 4 * 9 / (3 pi) = 3.820 px from the centre; behind the focus plane it lies on
    # the left in the L view and on the right in the R view, so x_L - x_R = -7.639 px (and +7.639 in front).
    uniform = ApertureProfile(edge=0.0, falloff=0.0, split=0.0)
    left, right = dual_pixel_kernels(9.0, uniform)
    assert _centroid_x(left) == pytest.approx(-3.820, abs=0.01) and _centroid_x(right) == pytest.approx(3.820, abs=0.01)
    assert _centroid_x(left) - _centroid_x(right) == pytest.approx(-7.639, abs=0.02)
    assert float(disparity_from_coc(9.0, uniform)) == pytest.approx(-7.639, abs=0.02)
    assert float(disparity_from_coc(-9.0, uniform)) == pytest.approx(7.639, abs=0.02)


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


# ---- the aperture families of ifan 0.2 (docs/synth.md) -----------------------------------------

from ifan.synth.psf import PSF_FAMILIES, sample_profile  # noqa: E402

FAMILY_PROFILES = {f: [sample_profile(np.random.default_rng([3, i]), f, cateye_p=0.5) for i in range(4)]
                   for f in PSF_FAMILIES}


def _moments(k: np.ndarray) -> tuple[float, float, np.ndarray]:
    half = k.shape[0] // 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    k = k.astype(np.float64) / k.sum()
    cx, cy = (k * xx).sum(), (k * yy).sum()
    cov = np.array([[(k * (xx - cx) ** 2).sum(), (k * (xx - cx) * (yy - cy)).sum()],
                    [(k * (xx - cx) * (yy - cy)).sum(), (k * (yy - cy) ** 2).sum()]])
    return cx, cy, cov


@pytest.mark.parametrize("family", PSF_FAMILIES)
@pytest.mark.parametrize("radius", [-9.0, -2.0, 0.7, 3.0, 12.0])
def test_every_family_is_normalised_centred_and_has_its_documented_disparity(family, radius):
    for profile in FAMILY_PROFILES[family]:
        left, right = dual_pixel_kernels(radius, profile)
        assert left.min() >= 0 and right.min() >= 0
        assert left.sum() == pytest.approx(1.0, abs=1e-5) and right.sum() == pytest.approx(1.0, abs=1e-5)
        cx, cy, _ = _moments(center_kernel(radius, profile))
        assert abs(cx) < 0.02 + 0.003 * abs(radius) and abs(cy) < 0.02 + 0.003 * abs(radius)  # defocus does not shift
        measured = _centroid_x(left) - _centroid_x(right)
        assert measured == pytest.approx(float(disparity_from_coc(radius, profile)), abs=0.02 + 0.002 * abs(radius))
        if profile.mirror_symmetric:
            np.testing.assert_allclose(right, left[:, ::-1], atol=1e-7)
        flipped_left, flipped_right = dual_pixel_kernels(-radius, profile)  # crossing the focus plane turns the
        np.testing.assert_allclose(flipped_left, left[::-1, ::-1], atol=1e-6)  # picture through the centre
        np.testing.assert_allclose(flipped_right, right[::-1, ::-1], atol=1e-6)


@pytest.mark.parametrize("blades", [5, 6, 7, 9])
def test_polygonal_aperture_has_the_symmetry_of_its_blades(blades):
    import cv2

    profile = ApertureProfile(edge=0.02, falloff=0.0, split=0.1, blades=blades, rotation=0.3)
    k = center_kernel(20.0, profile).astype(np.float32)
    half = k.shape[0] // 2
    rotated = cv2.warpAffine(k, cv2.getRotationMatrix2D((half, half), 360.0 / blades, 1.0), k.shape[::-1],
                             flags=cv2.INTER_LINEAR)
    assert np.abs(rotated - k).sum() < 0.08  # a turn by one blade maps the PSF onto itself (resampling aside)
    off = cv2.warpAffine(k, cv2.getRotationMatrix2D((half, half), 180.0 / blades, 1.0), k.shape[::-1],
                         flags=cv2.INTER_LINEAR)
    assert np.abs(off - k).sum() > 2 * np.abs(rotated - k).sum()  # half a blade does not: straight edges
    # its area is that of the n-gon inscribed in the blur circle
    area = (k > 0.5 * np.median(k[k > 0])).sum()
    assert area == pytest.approx(0.5 * blades * math.sin(2 * math.pi / blades) * 20.0 ** 2, rel=0.08)


def test_rim_and_soft_families_move_light_to_the_rim_and_to_the_centre():
    def spread(profile):  # mean radius of the light, in units of the blur radius
        k = center_kernel(15.0, profile).astype(np.float64)
        half = k.shape[0] // 2
        yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
        return (k * np.hypot(xx, yy)).sum() / 15.0

    def expected(f):  # mean of rho under the intensity 1 - f rho^2 on the unit disc
        return (1 / 3 - f / 5) / (1 / 2 - f / 4)

    uniform = spread(ApertureProfile(edge=0.02, falloff=0.0))
    assert uniform == pytest.approx(expected(0.0), rel=0.02)
    assert spread(ApertureProfile(edge=0.02, falloff=-0.8)) == pytest.approx(expected(-0.8), rel=0.02)  # bright rim
    assert spread(ApertureProfile(edge=0.6, falloff=0.8)) < expected(0.8) < uniform - 0.08  # soft centre


def test_near_gaussian_family_is_a_gaussian_of_half_the_radius():
    k = center_kernel(12.0, ApertureProfile(edge=0.1, falloff=0.0, split=0.1, gauss=1.0))
    _, _, cov = _moments(k)
    # sigma = r / 2 per axis (the 1.5 r truncation trims ~3 % of the variance; the pixel tent adds 1/6 px^2)
    assert math.sqrt(cov[0, 0] - 1 / 6) == pytest.approx(6.0, rel=0.05)
    assert cov[0, 0] == pytest.approx(cov[1, 1], rel=1e-3) and abs(cov[0, 1]) < 1e-3


def test_cats_eye_narrows_the_psf_along_its_direction():
    angle = 0.6
    k = center_kernel(15.0, ApertureProfile(edge=0.05, falloff=0.0, split=0.1, cateye=0.8, cateye_angle=angle))
    _, _, cov = _moments(k)
    d = np.array([math.cos(angle), math.sin(angle)])
    n = np.array([-d[1], d[0]])
    assert d @ cov @ d < 0.5 * (n @ cov @ n)  # the lens-shaped pupil is thin along the offset
    assert n @ cov @ n == pytest.approx(15.0 ** 2 / 4 * (1 - 0.4 ** 2), rel=0.25)  # and nearly full across it


def test_disc_family_draws_as_ifan_0_1_did():
    rng_new, rng_old = np.random.default_rng(5), np.random.default_rng(5)
    profile = sample_profile(rng_new, "disc")
    old = ApertureProfile(edge=float(rng_old.uniform(0.03, 0.2)), falloff=float(rng_old.uniform(-0.15, 0.35)),
                          split=float(rng_old.uniform(0.03, 0.15)))
    assert profile == old and rng_new.random() == rng_old.random()
    with pytest.raises(ValueError, match="unknown PSF family"):
        sample_profile(rng_new, "heart")


@pytest.mark.parametrize("kwargs", [dict(blades=2), dict(blades=17), dict(cateye=-0.1), dict(gauss=1.5)])
def test_invalid_family_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        ApertureProfile(**kwargs)
