"""The parts scenes are built from: texture warps, textured planes, shapes, highlights, the
background, subjects (silhouettes with strands of hair), groups of shapes and point lights.

Each draws from the random generator it is given, in a fixed order, so that a scene is a
deterministic function of its seed (:func:`ifan.synth.scenes.build_scene`). Colours are linear light.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ifan.synth.assets import log_uniform, random_colour, texture
from ifan.synth.rendering import Layer
from ifan.synth.sampling import SceneSpec


def affine_warp(rng: np.random.Generator):
    """A random rotation, scale (0.55x to 1.25x texels per pixel), flip and crop, as a ``warp`` for
    :func:`~ifan.synth.assets.texture`."""
    theta = rng.uniform(0.0, 2 * math.pi)
    s = log_uniform(rng, 0.55, 1.25)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    t = rng.random(2)

    def warp(src: np.ndarray, h: int, w: int) -> np.ndarray:
        c, si = math.cos(theta) * s, math.sin(theta) * s
        sh, sw = src.shape[:2]
        ty, tx = t[0] * sh, t[1] * sw
        # output (x, y) -> source (x', y') (WARP_INVERSE_MAP)
        m = np.array([[flip * c, -si, tx - flip * c * w / 2 + si * h / 2],
                      [flip * si, c, ty - flip * si * w / 2 - c * h / 2]], np.float64)
        return cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT_101)

    return warp


def textured_plane(rng: np.random.Generator, spec: SceneSpec, shape: tuple[int, int], v_lo: float,
           v_hi: float) -> tuple[np.ndarray, np.ndarray]:
    """A textured 3-D plane whose inverse depth spans ``[inv_depth(v_lo), inv_depth(v_hi)]`` over the canvas.

    Returns ``(rgb, depth)``; a random texture is warped by the plane's homography.
    """
    hc, wc = shape
    f = spec.camera.focal_length_px
    cy, cx = (hc - 1) / 2.0, (wc - 1) / 2.0
    i_lo, i_hi = spec.inv_depth(v_lo), spec.inv_depth(v_hi)
    theta = rng.uniform(0.0, 2 * math.pi)
    reach = wc / 2.0 * abs(math.cos(theta)) + hc / 2.0 * abs(math.sin(theta))
    g = (i_hi - i_lo) / (2.0 * reach)
    gx, gy, ic = g * math.cos(theta), g * math.sin(theta), 0.5 * (i_lo + i_hi)
    yy, xx = np.mgrid[:hc, :wc]
    inv = ic + gx * (xx - cx) + gy * (yy - cy)
    depth = (1.0 / inv).astype(np.float32)
    # 3-D plane n.P = h with 1/Z = n.d / h, d = ((x - cx)/f, (y - cy)/f, 1)
    n = np.array([gx * f, gy * f, ic])
    n /= np.linalg.norm(n)
    e1 = np.array([1.0, 0.0, 0.0]) - n[0] * n
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    phi = rng.uniform(0.0, 2 * math.pi)
    e1, e2 = math.cos(phi) * e1 + math.sin(phi) * e2, -math.sin(phi) * e1 + math.cos(phi) * e2
    magnification = rng.uniform(0.9, 1.4) * ic / i_lo  # output px per texel at the centre (>= ~0.9 everywhere)
    tau = f * ic / magnification  # texels per metre
    rows = []
    for e in (e1, e2):
        rows.append([tau * e[0] / f, tau * e[1] / f, tau * (e[2] - e[0] * cx / f - e[1] * cy / f)])
    rows.append([gx, gy, ic - gx * cx - gy * cy])
    hom = np.array(rows)
    jitter = rng.uniform(0.25, 0.75, 2)

    def warp(src: np.ndarray, h: int, w: int) -> np.ndarray:
        m = hom.copy()
        centre = m @ np.array([cx, cy, 1.0])  # the canvas centre lands near the middle of the source
        m[0] += (jitter[0] * src.shape[1] - centre[0] / centre[2]) * m[2]
        m[1] += (jitter[1] * src.shape[0] - centre[1] / centre[2]) * m[2]
        return cv2.warpPerspective(src, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_REFLECT_101)

    return texture(rng, hc, wc, warp, spec.content), depth


def shape_alpha(rng: np.random.Generator, size: float) -> np.ndarray:
    """Anti-aliased coverage of a random shape of radius ~``size`` px, in a square of side ``2 ceil(1.2 size) + 1``."""
    half = int(math.ceil(1.2 * size)) + 1
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    theta = rng.uniform(0.0, math.pi)
    x = xx * math.cos(theta) + yy * math.sin(theta)
    y = -xx * math.sin(theta) + yy * math.cos(theta)
    u = rng.random()
    if u < 0.3:  # disc or ellipse
        a, b = size, size * rng.uniform(0.4, 1.0)
        sdf = (np.sqrt((x / a) ** 2 + (y / b) ** 2) - 1.0) * b
    elif u < 0.6:  # rounded rectangle
        a, b = size * rng.uniform(0.5, 1.0), size * rng.uniform(0.2, 1.0)
        rr = min(a, b) * rng.uniform(0.0, 0.6)
        qx, qy = np.abs(x) - a + rr, np.abs(y) - b + rr
        sdf = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - rr
    else:  # convex polygon
        k = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * math.pi, k))
        radius = size * rng.uniform(0.6, 1.0, k)
        px, py = radius * np.cos(angles), radius * np.sin(angles)
        sdf = np.full(x.shape, -np.inf, np.float32)
        for i in range(k):
            ex, ey = px[(i + 1) % k] - px[i], py[(i + 1) % k] - py[i]
            norm = math.hypot(ex, ey) + 1e-9
            d = ((x - px[i]) * ey - (y - py[i]) * ex) / norm  # > 0 outside for counter-clockwise vertices
            sdf = np.maximum(sdf, d)
    return np.clip(0.5 - sdf, 0.0, 1.0).astype(np.float32)


def add_highlights(rng: np.random.Generator, rgb: np.ndarray) -> None:
    """Sprinkle small bright spots (linear values 2 to 12) on a surface, in place."""
    h, w = rgb.shape[:2]
    for _ in range(int(rng.integers(3, 30))):
        radius = rng.uniform(0.6, 2.0)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        half = int(math.ceil(radius)) + 1
        y0, x0 = int(cy) - half, int(cx) - half
        yy, xx = np.mgrid[y0:y0 + 2 * half + 1, x0:x0 + 2 * half + 1]
        cover = np.clip(radius + 0.5 - np.hypot(yy - cy, xx - cx), 0.0, 1.0).astype(np.float32)
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        colour = random_colour(rng, 0.5, 1.0) * rng.uniform(2.0, 12.0)
        region = rgb[yy[ok], xx[ok]]
        c = cover[ok][:, None]
        rgb[yy[ok], xx[ok]] = region * (1.0 - c) + colour * c


def background_plane(rng: np.random.Generator, spec: SceneSpec, shape: tuple[int, int],
                slanted: bool) -> tuple[Layer, float]:
    """The farthest surface: an opaque textured plane at the far end of the range, maybe slanted.

    Returns the layer and the normalised position (0 = far) of its nearest point.
    """
    if slanted:
        ratio_cap = min(2.5 * spec.inv_depth_far, spec.inv_depth_near)
        v_cap = (ratio_cap - spec.inv_depth_far) / (spec.inv_depth_near - spec.inv_depth_far)
        v_hi = float(rng.uniform(0.0, min(0.35, v_cap)))
    else:
        v_hi = 0.0
    rgb, depth = textured_plane(rng, spec, shape, 0.0, v_hi)
    if rng.random() < 0.35:
        add_highlights(rng, rgb)
    return Layer(rgb, np.ones(shape, np.float32), depth), v_hi


def silhouette(rng: np.random.Generator, shape: tuple[int, int], side: float) -> np.ndarray:
    """Anti-aliased coverage of a subject: head and shoulders, a large blob, or a tall post or trunk."""
    hc, wc = shape
    yy, xx = np.mgrid[:hc, :wc].astype(np.float32)
    u = rng.random()
    cx = rng.uniform(0.25, 0.75) * wc
    if u < 0.5:  # head and shoulders, the bust leaving the frame at the bottom
        a = rng.uniform(0.1, 0.22) * side
        b = a * rng.uniform(1.1, 1.4)
        cy = rng.uniform(0.25, 0.6) * hc
        tilt = rng.uniform(-0.25, 0.25)
        x, y = xx - cx, yy - cy
        xr, yr = x * math.cos(tilt) + y * math.sin(tilt), -x * math.sin(tilt) + y * math.cos(tilt)
        head = (np.sqrt((xr / a) ** 2 + (yr / b) ** 2) - 1.0) * a
        sw, sh = a * rng.uniform(2.0, 3.2), b * rng.uniform(1.2, 2.0)
        sy = cy + b * rng.uniform(1.2, 1.6) + sh
        shoulders = (np.sqrt(((xx - cx) / sw) ** 2 + ((yy - sy) / sh) ** 2) - 1.0) * min(sw, sh)
        neck = np.maximum(np.abs(xx - cx) - 0.45 * a, np.abs(yy - (cy + b)) - 0.6 * b)
        sdf = np.minimum(np.minimum(head, shoulders), neck)
    elif u < 0.8:  # a large blob
        a = shape_alpha(rng, rng.uniform(0.2, 0.4) * side)
        out = np.zeros(shape, np.float32)
        half = a.shape[0] // 2
        cy = int(rng.uniform(0.3, 0.7) * hc)
        y0, x0 = cy - half, int(cx) - half
        ys, xs = slice(max(y0, 0), min(y0 + a.shape[0], hc)), slice(max(x0, 0), min(x0 + a.shape[1], wc))
        out[ys, xs] = a[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        return out
    else:  # a tall post, trunk or standing figure, crossing the frame
        half_w = rng.uniform(0.04, 0.15) * side
        tilt = rng.uniform(-0.2, 0.2)
        sdf = np.abs((xx - cx) * math.cos(tilt) + (yy - hc / 2) * math.sin(tilt)) - half_w
    return np.clip(0.5 - sdf, 0.0, 1.0).astype(np.float32)


def add_strands(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """Hair-like strands, about 1 px wide, growing outwards from the silhouette's edge."""
    edge_y, edge_x = np.nonzero((alpha > 0.2) & (alpha < 0.8))
    if edge_y.size == 0:
        return alpha
    gy, gx = np.gradient(alpha)
    canvas = np.zeros(alpha.shape, np.uint8)
    count = int(rng.integers(40, 400))
    picks = rng.integers(0, edge_y.size, count)
    for y, x in zip(edge_y[picks], edge_x[picks]):
        ny, nx = -gy[y, x], -gx[y, x]  # outwards: alpha decreases
        norm = math.hypot(ny, nx) + 1e-9
        angle = math.atan2(ny / norm, nx / norm) + rng.normal(0.0, 0.5)
        length = log_uniform(rng, 3.0, 30.0)
        bend = rng.normal(0.0, 0.3)
        points = [(x, y)]
        for t in np.linspace(0.0, 1.0, 6)[1:]:
            a = angle + bend * t
            px, py = points[-1]
            points.append((px + length / 5 * math.cos(a), py + length / 5 * math.sin(a)))
        cv2.polylines(canvas, [np.round(np.array(points) * 16).astype(np.int32)], False, int(rng.integers(120, 256)),
                      1, cv2.LINE_AA, shift=4)
    return np.maximum(alpha, canvas.astype(np.float32) / 255.0)


def point_lights(rng: np.random.Generator, rgb: np.ndarray, count: int, radius: tuple[float, float],
                  intensity: tuple[float, float]) -> None:
    """Paint ``count`` small bright discs (log-uniform radius and linear intensity) into ``rgb`` in place."""
    h, w = rgb.shape[:2]
    for _ in range(count):
        r = log_uniform(rng, *radius)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        half = int(math.ceil(r)) + 1
        y0, x0 = max(int(cy) - half, 0), max(int(cx) - half, 0)
        y1, x1 = min(int(cy) + half + 2, h), min(int(cx) + half + 2, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        cover = np.clip(r + 0.5 - np.hypot(yy - cy, xx - cx), 0.0, 1.0).astype(np.float32)[..., None]
        warm = np.array([1.0, rng.uniform(0.5, 0.9), rng.uniform(0.1, 0.5)], np.float32)
        colour = warm if rng.random() < 0.6 else random_colour(rng, 0.5, 1.0) / 0.9
        colour = colour * np.float32(log_uniform(rng, *intensity))
        rgb[y0:y1, x0:x1] = rgb[y0:y1, x0:x1] * (1.0 - cover) + colour * cover


def subject_layer(rng: np.random.Generator, spec: SceneSpec, shape: tuple[int, int], v: float,
                   gain: float) -> Layer:
    """The subject: a silhouette (with strands of hair, often) at position ``v``, texture times ``gain``."""
    side = min(spec.width, spec.height)
    alpha = silhouette(rng, shape, side)
    if rng.random() < 0.6:
        alpha = add_strands(rng, alpha)
    rgb = texture(rng, shape[0], shape[1], affine_warp(rng), spec.content) * np.float32(gain)
    return Layer(rgb, alpha, np.full(shape, 1.0 / spec.inv_depth(v), np.float32))


def paint_shape(rng: np.random.Generator, spec: SceneSpec, premult: np.ndarray, cover: np.ndarray, size: float,
                gain: float = 1.0) -> None:
    """Paint one textured shape of about ``size`` px, centred at a random pixel, over what ``premult``
    ``(H, W, 3)`` (colour times coverage) and ``cover`` ``(H, W)`` hold (in place; cut by the edges)."""
    hc, wc = cover.shape
    a = shape_alpha(rng, size)
    half = a.shape[0] // 2
    cy, cx = int(rng.integers(0, hc)), int(rng.integers(0, wc))
    y0, x0 = max(cy - half, 0), max(cx - half, 0)
    y1, x1 = min(cy + half + 1, hc), min(cx + half + 1, wc)
    a = a[y0 - (cy - half):y1 - (cy - half), x0 - (cx - half):x1 - (cx - half)]
    tex = texture(rng, y1 - y0, x1 - x0, affine_warp(rng), spec.content) * np.float32(gain)
    p, c = premult[y0:y1, x0:x1], cover[y0:y1, x0:x1]
    p *= 1.0 - a[..., None]
    p += tex * a[..., None]
    c *= 1.0 - a
    c += a


def shapes_layer(rng: np.random.Generator, spec: SceneSpec, shape: tuple[int, int], v: float, count: int,
                  size: tuple[float, float], gain: float = 1.0) -> Layer:
    """``count`` textured shapes at position ``v`` (a fronto-parallel group)."""
    side = min(spec.width, spec.height)
    premult, cover = np.zeros(shape + (3,), np.float32), np.zeros(shape, np.float32)
    for _ in range(count):
        paint_shape(rng, spec, premult, cover, log_uniform(rng, *size) * side, gain)
    rgb = premult / np.maximum(cover, 1e-6)[..., None]
    return Layer(rgb.astype(np.float32), cover, np.full(shape, 1.0 / spec.inv_depth(v), np.float32))
