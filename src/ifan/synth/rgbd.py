"""RGB-D images as layered scenes: depth slabs whose hidden parts are filled, and the stereo scene kind.

:func:`rgbd_layers` turns one visible surface per pixel (a photo and its depth map) into layers the
renderer can blur; :func:`stereo_scene` builds the ``stereo`` kind from crops of scikit-image's
``stereo_motorcycle`` (Middlebury 2014: a real photo with a real depth map).
"""

from __future__ import annotations

import cv2
import numpy as np

from ifan.synth.assets import load_stereo_motorcycle
from ifan.synth.optics import ThinLensCamera
from ifan.synth.psf import ApertureProfile, kernel_half_size
from ifan.synth.rendering import Layer
from ifan.synth.sampling import SceneSpec


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


def stereo_scene(rng: np.random.Generator, spec: SceneSpec) -> list[Layer]:
    """The ``stereo`` kind: the crop of ``spec.crop`` of the motorcycle, as depth slabs (``rng`` unused)."""
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
