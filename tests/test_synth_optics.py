"""Thin-lens optics: the signed circle of confusion against the textbook formula."""

from __future__ import annotations

import numpy as np
import pytest

from ifan.synth.optics import ThinLensCamera


def test_coc_matches_thin_lens_formula_in_millimetres():
    cam = ThinLensCamera(focal_length_mm=50.0, f_number=2.0, focus_distance_m=2.0, pixel_pitch_um=5.0)
    depths_m = np.array([0.5, 1.0, 1.9, 2.0, 2.1, 4.0, 100.0])
    f, a, s = 50.0, 50.0 / 2.0, 2000.0
    z = depths_m * 1000.0
    diameter_mm = a * f / (s - f) * (z - s) / z  # c = A f / (S - f) * (Z - S) / Z
    expected_px = diameter_mm / 2.0 / 0.005
    np.testing.assert_allclose(cam.coc_radius_px(depths_m), expected_px, rtol=1e-5)
    # a point at 4 m with this 50 mm f/2 lens focused at 2 m: 0.3205 mm disc, 32.05 px radius at 5 um
    assert cam.coc_radius_px(4.0) == pytest.approx(32.0513, rel=1e-4)


def test_coc_sign_and_zero_at_focus():
    cam = ThinLensCamera(35.0, 1.8, 1.5, 20.0)
    assert cam.coc_radius_px(1.5) == pytest.approx(0.0, abs=1e-6)
    assert cam.coc_radius_px(3.0) > 0  # behind the focus plane
    assert cam.coc_radius_px(0.8) < 0  # in front of it


def test_blur_is_linear_in_inverse_depth_offset():
    cam = ThinLensCamera(85.0, 1.4, 1.2, 30.0)
    z = np.geomspace(0.3, 50.0, 40)
    coc = cam.coc_radius_px(z).astype(np.float64)
    offset = 1.0 / cam.focus_distance_m - 1.0 / z
    slope = coc / offset
    np.testing.assert_allclose(slope, cam.radius_at_infinity_px * cam.focus_distance_m, rtol=1e-5)
    # |coc| grows monotonically with |1/Z - 1/S|
    order = np.argsort(np.abs(offset))
    assert np.all(np.diff(np.abs(coc[order])) >= -1e-5)


def test_depth_from_coc_inverts_and_refuses_radii_beyond_infinity():
    cam = ThinLensCamera(50.0, 4.0, 3.0, 10.0)
    z = np.array([0.7, 2.0, 3.0, 9.0, 40.0])
    np.testing.assert_allclose(cam.depth_from_coc(cam.coc_radius_px(z)), z, rtol=1e-4)
    with pytest.raises(ValueError, match="radius at infinity"):
        cam.depth_from_coc(cam.radius_at_infinity_px + 0.1)


@pytest.mark.parametrize("kwargs", [
    dict(focal_length_mm=50.0, f_number=2.0, focus_distance_m=0.04, pixel_pitch_um=5.0),  # S < f
    dict(focal_length_mm=-1.0, f_number=2.0, focus_distance_m=2.0, pixel_pitch_um=5.0),
    dict(focal_length_mm=50.0, f_number=0.0, focus_distance_m=2.0, pixel_pitch_um=5.0),
    dict(focal_length_mm=50.0, f_number=2.0, focus_distance_m=2.0, pixel_pitch_um=float("nan")),
])
def test_invalid_cameras_are_refused(kwargs):
    with pytest.raises(ValueError):
        ThinLensCamera(**kwargs)


def test_nonpositive_depths_are_refused():
    with pytest.raises(ValueError, match="positive"):
        ThinLensCamera(50.0, 2.0, 2.0, 5.0).coc_radius_px(np.array([1.0, 0.0]))
