"""Pictures: the defocus colour ramp and its 16-bit encoding."""

from __future__ import annotations

import numpy as np

from ifan.viz import colorize_defocus, encode_defocus_16bit


def test_defocus_rendering():
    d = np.array([[0.0, -1.0], [2.0, 4.0]], np.float32)
    rgb, vmax = colorize_defocus(d, vmax=4.0)
    assert rgb.shape == (2, 2, 3) and vmax == 4.0
    lum = rgb.mean(axis=2)
    assert lum[0, 0] < lum[0, 1] < lum[1, 0] < lum[1, 1]  # brighter = more defocus, sign ignored
    enc = encode_defocus_16bit(np.array([0.0, -1.5, 3.25]))
    np.testing.assert_array_equal((enc.astype(np.float64) - 32768) / 256, [0.0, -1.5, 3.25])
