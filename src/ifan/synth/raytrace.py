"""A brute-force, ray-traced renderer of layered scenes: the reference :func:`ifan.synth.rendering.render`
is measured against (slow; for small test images).

Occlusion is decided ray by ray, per pixel, with each pixel's exact blur radius, where ``render``
blurs whole layers with quantised radii and composites them (see :mod:`ifan.synth.rendering`).
"""

from __future__ import annotations

import math

import numpy as np

from ifan.synth.optics import ThinLensCamera
from ifan.synth.psf import ApertureProfile, transmission
from ifan.synth.rendering import DualPixelImages, Scene, finish_views


def _bilinear(padded: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sample a field at float positions (bilinear); ``padded`` is the field with a 1-px border added.

    Positions are clamped to the border, so the border's values hold outside the field.
    """
    h, w = padded.shape
    y = np.clip(y + 1.0, 0.0, h - 1.001)
    x = np.clip(x + 1.0, 0.0, w - 1.001)
    y0, x0 = y.astype(np.int64), x.astype(np.int64)
    fy, fx = y - y0, x - x0
    i = y0 * w + x0
    f = padded.ravel()
    top = f[i] * (1.0 - fx) + f[i + 1] * fx
    bottom = f[i + w] * (1.0 - fx) + f[i + w + 1] * fx
    return top * (1.0 - fy) + bottom * fy


def render_reference(scene: Scene, camera: ThinLensCamera, profile: ApertureProfile = ApertureProfile(),
                     samples_per_px: float = 3.0) -> DualPixelImages:
    """Brute-force ray-traced scatter renderer (slow; for small test images).

    Every pixel of every layer sends rays through a fine grid of aperture points ``u``; a ray
    lands at ``p + r(p) * u`` and reaches the sensor only through the nearer layers' coverage
    where it crosses them, i.e. occlusion is decided ray by ray, per pixel, with each pixel's
    exact (not quantised) blur radius. Landing points are split bilinearly between the four
    nearest sensor pixels (the same pixel tent as the kernels), and the ray that reaches the
    sensor pixel ``x`` crosses layer ``j`` at ``x - r_j * u`` (``r_j`` found by one
    fixed-point step, bilinear in between pixels).

    Args:
        samples_per_px: aperture samples per pixel of the largest blur radius.

    Returns:
        :class:`DualPixelImages` without noise.
    """
    hc, wc = scene.canvas_shape
    radii = [camera.coc_radius_px(layer.depth).astype(np.float64) for layer in scene.layers]
    r_max = max(float(np.abs(r[layer.alpha > 0]).max(initial=0.0)) for r, layer in zip(radii, scene.layers))
    extent = profile.extent
    n = max(1, int(math.ceil(2 * extent * max(r_max, 0.25) * samples_per_px)))
    g = (np.arange(n) + 0.5) / n * 2 * extent - extent
    ux, uy = np.meshgrid(g, g)
    ux, uy = ux.ravel(), uy.ravel()
    weights = {v: transmission(ux, uy, profile, v) for v in ("left", "right")}
    keep = (weights["left"] + weights["right"]) > 0
    ux, uy = ux[keep], uy[keep]
    weights = {v: w[keep] / w[keep].sum() for v, w in weights.items()}
    alphas = [np.pad(layer.alpha.astype(np.float64), 1) for layer in scene.layers]  # 0 outside the canvas
    radii_p = [np.pad(r, 1, mode="edge") for r in radii]
    views = {v: np.zeros((hc * wc, 3)) for v in ("left", "right")}
    for k, layer in enumerate(scene.layers):
        ys, xs = np.nonzero(layer.alpha > 0)
        if ys.size == 0:
            continue
        r = radii[k][ys, xs]
        colour = layer.rgb[ys, xs].astype(np.float64) * layer.alpha[ys, xs, None]
        chunk = max(1, 2_000_000 // ys.size)
        for c0 in range(0, ux.size, chunk):  # rays: (aperture samples in this chunk) x (source pixels)
            sx, sy = ux[c0:c0 + chunk, None], uy[c0:c0 + chunk, None]
            ly, lx = ys + r * sy, xs + r * sx  # landing points
            y0, x0 = np.floor(ly).astype(np.int64), np.floor(lx).astype(np.int64)
            fy, fx = ly - y0, lx - x0
            for dy, wy in ((0, 1.0 - fy), (1, fy)):
                for dx, wx in ((0, 1.0 - fx), (1, fx)):
                    py, px = y0 + dy, x0 + dx  # sensor pixel receiving part of each ray
                    w = wy * wx * ((py >= 0) & (py < hc) & (px >= 0) & (px < wc))
                    py, px = np.clip(py, 0, hc - 1), np.clip(px, 0, wc - 1)
                    for j in range(k + 1, len(scene.layers)):  # crossing layer j at pixel - r_j u
                        rj = radii[j][py, px]
                        rj = _bilinear(radii_p[j], py - rj * sy, px - rj * sx)
                        w = w * (1.0 - _bilinear(alphas[j], py - rj * sy, px - rj * sx))
                    idx = (py * wc + px).ravel()
                    for v in ("left", "right"):
                        wv = (w * weights[v][c0:c0 + chunk, None]).ravel()
                        for ch in range(3):
                            contribution = wv * np.broadcast_to(colour[:, ch], w.shape).ravel()
                            views[v][:, ch] += np.bincount(idx, weights=contribution, minlength=hc * wc)
    views = {v: img.reshape(hc, wc, 3) for v, img in views.items()}
    return finish_views(scene, camera, profile, views["left"].astype(np.float32), views["right"].astype(np.float32),
                   None, None)
