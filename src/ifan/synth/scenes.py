"""Scenes to render: procedural layered scenes, subjects before backgrounds, night, a real RGB-D pair.

Five kinds of scene (:data:`~ifan.synth.sampling.KINDS`), all deterministic from a seed:

* ``"layers"``: dead-leaves scenes: occluding textured shapes (discs, ellipses, rounded
  rectangles, polygons) in fronto-parallel depth groups over a (possibly slanted) background
  plane; one group often sits on the focus plane, so most scenes have a sharp subject.
* ``"planes"``: a few slanted textured planes with straight occluding edges, textures warped
  with the homography of each plane (perspective-correct foreshortening).
* ``"stereo"``: crops of scikit-image's ``stereo_motorcycle`` (Middlebury 2014): a real photo
  with a real depth map (from its ground-truth disparity), split into depth slabs whose hidden
  parts are filled from their surroundings.
* ``"portrait"``: a subject (head and shoulders, a large blob, or a post) with sharp edges and
  often hair-like strands, on the focus plane in front of a defocused background; bright subjects
  on dark backgrounds and the reverse; sometimes objects between them or blurred in front.
* ``"night"``: a dark background with many point lights (bokeh discs when defocused) and lit
  windows, often with a dimly lit subject in front.

Textures come from :mod:`ifan.synth.assets` (photographs shipped offline and procedural
patterns) and are put together from the parts of :mod:`ifan.synth.scene_parts`; RGB-D images
become layers in :mod:`ifan.synth.rgbd`. Bright specular spots (linear values up to ~10, up to 60
for night lights) saturate into bokeh discs once blurred.
"""

from __future__ import annotations

import math

import numpy as np

from ifan.synth.assets import log_uniform, random_colour
from ifan.synth.color import linear_to_srgb_extended
from ifan.synth.rendering import Layer, Scene
from ifan.synth.rgbd import stereo_scene
from ifan.synth.sampling import KINDS, SceneSpec
from ifan.synth.scene_parts import (background_plane, paint_shape, point_lights, shapes_layer, subject_layer,
                                    textured_plane)


def _layers_scene(rng: np.random.Generator, spec: SceneSpec) -> list[Layer]:
    shape = (spec.height + 2 * spec.pad, spec.width + 2 * spec.pad)
    background, v_back = background_plane(rng, spec, shape, slanted=rng.random() < 0.5)
    layers = [background]
    v_min = v_back + 0.05 + 0.05 * (1.0 - v_back) * rng.random()  # every leaf in front of the background
    groups = int(rng.integers(3, 9))
    v = np.sort(rng.uniform(v_min, 1.0, groups))
    if rng.random() < 0.7:
        v[-1] = 1.0
    if spec.focus > v_min and rng.random() < 0.6:
        v[int(rng.integers(0, groups))] = spec.focus
        v = np.sort(v)
    premult = [np.zeros(shape + (3,), np.float32) for _ in range(groups)]
    cover = [np.zeros(shape, np.float32) for _ in range(groups)]
    side = min(spec.width, spec.height)
    for _ in range(int(rng.integers(15, 61))):
        g = int(rng.integers(0, groups))
        paint_shape(rng, spec, premult[g], cover[g], log_uniform(rng, 0.03, 0.3) * side * (0.7 + 0.6 * v[g]))
    for g in range(groups):
        if not cover[g].any():
            continue
        rgb = premult[g] / np.maximum(cover[g], 1e-6)[..., None]
        depth = np.full(shape, 1.0 / spec.inv_depth(float(v[g])), np.float32)
        layers.append(Layer(rgb.astype(np.float32), cover[g], depth))
    return layers


def _planes_scene(rng: np.random.Generator, spec: SceneSpec) -> list[Layer]:
    shape = (spec.height + 2 * spec.pad, spec.width + 2 * spec.pad)
    hc, wc = shape
    background, v_back = background_plane(rng, spec, shape, slanted=rng.random() < 0.8)
    layers = [background]
    count = int(rng.integers(1, 4))
    # disjoint slices of the depth range, far to near, so that no plane pierces another
    edges = np.sort(rng.uniform(v_back + 0.05, 1.0, count - 1))
    edges = np.concatenate([[v_back + 0.05], edges, [1.0]])
    ranges = []
    for k in range(count):
        lo = float(rng.uniform(edges[k], 0.5 * (edges[k] + edges[k + 1])))
        cap = min(spec.inv_depth(float(edges[k + 1])), 2.5 * spec.inv_depth(lo))  # texture scale varies <= 2.5x
        v_cap = (cap - spec.inv_depth_far) / (spec.inv_depth_near - spec.inv_depth_far)
        ranges.append((lo, float(rng.uniform(lo, max(lo, v_cap)))))
    yy, xx = np.mgrid[:hc, :wc].astype(np.float32)
    for lo, hi in ranges:
        rgb, depth = textured_plane(rng, spec, shape, lo, hi)
        theta = rng.uniform(0.0, 2 * math.pi)
        py, px = rng.uniform(0.2, 0.8) * hc, rng.uniform(0.2, 0.8) * wc
        sdf = (xx - px) * math.cos(theta) + (yy - py) * math.sin(theta)
        if rng.random() < 0.5:  # a wedge: two half-planes
            theta2 = theta + rng.uniform(0.3, 2.5)
            sdf = np.maximum(sdf, (xx - px) * math.cos(theta2) + (yy - py) * math.sin(theta2))
        alpha = np.clip(0.5 - sdf, 0.0, 1.0).astype(np.float32)
        layers.append(Layer(rgb, alpha, depth))
    return layers


def _subject_position(rng: np.random.Generator, spec: SceneSpec) -> float:
    """The subject's position: on the focus plane, or (background in focus) in front of it."""
    return spec.focus if spec.focus >= 0.5 else float(rng.uniform(0.6, 1.0))


def _portrait_scene(rng: np.random.Generator, spec: SceneSpec) -> list[Layer]:
    """A subject, sharp edges and strands of hair and all, in front of a defocused background; often
    a bright subject against a dark background or the reverse; sometimes objects in between or in front."""
    shape = (spec.height + 2 * spec.pad, spec.width + 2 * spec.pad)
    background, v_back = background_plane(rng, spec, shape, slanted=rng.random() < 0.4)
    u = rng.random()
    subject_gain = 1.0
    if u < 0.4:  # bright subject, dark background
        background.rgb *= np.float32(log_uniform(rng, 0.02, 0.3))
        subject_gain = log_uniform(rng, 1.0, 2.0)
    elif u < 0.8:  # dark subject, bright background (a window, the sky)
        background.rgb *= np.float32(log_uniform(rng, 1.2, 3.0))
        subject_gain = log_uniform(rng, 0.05, 0.5)
    layers = [background]
    v_subject = _subject_position(rng, spec)
    if rng.random() < 0.5 and v_subject - v_back > 0.15:
        v_mid = float(rng.uniform(v_back + 0.05, v_subject - 0.05))
        layers.append(shapes_layer(rng, spec, shape, v_mid, int(rng.integers(2, 10)), (0.05, 0.3)))
    layers.append(subject_layer(rng, spec, shape, v_subject, subject_gain))
    if rng.random() < 0.25 and v_subject < 0.97:  # something closer than the subject, blurred
        layers.append(shapes_layer(rng, spec, shape, float(rng.uniform(v_subject + 0.02, 1.0)),
                                    int(rng.integers(1, 4)), (0.1, 0.4)))
    return layers


def _night_scene(rng: np.random.Generator, spec: SceneSpec) -> list[Layer]:
    """Night: a dark background with many point lights (bokeh when defocused), lit windows, and
    often a dimly lit subject in front."""
    shape = (spec.height + 2 * spec.pad, spec.width + 2 * spec.pad)
    background, v_back = background_plane(rng, spec, shape, slanted=rng.random() < 0.3)
    background.rgb *= np.float32(log_uniform(rng, 0.005, 0.08))
    if rng.random() < 0.3:  # lit windows
        hc, wc = shape
        for _ in range(int(rng.integers(3, 30))):
            y, x = int(rng.integers(0, hc)), int(rng.integers(0, wc))
            hh, ww = int(rng.integers(3, 30)), int(rng.integers(3, 30))
            background.rgb[y:y + hh, x:x + ww] = random_colour(rng, 0.3, 1.0) * np.float32(log_uniform(rng, 0.3, 3.0))
    area = shape[0] * shape[1] / 512.0 ** 2
    point_lights(rng, background.rgb, int(log_uniform(rng, 20, 300) * area), (0.5, 4.0), (1.5, 60.0))
    layers = [background]
    v_subject = _subject_position(rng, spec)
    if rng.random() < 0.4 and v_subject - v_back > 0.15:  # lights nearer than the background
        mid = shapes_layer(rng, spec, shape, float(rng.uniform(v_back + 0.05, v_subject - 0.05)),
                            int(rng.integers(1, 6)), (0.05, 0.25), gain=log_uniform(rng, 0.01, 0.1))
        point_lights(rng, mid.rgb, int(log_uniform(rng, 10, 100) * area), (0.5, 3.0), (2.0, 40.0))
        layers.append(mid)
    if rng.random() < 0.7:
        layers.append(subject_layer(rng, spec, shape, v_subject, log_uniform(rng, 0.03, 0.6)))
    return layers


def build_scene(spec: SceneSpec) -> Scene:
    """The layers of the scene described by ``spec`` (deterministic).

    Colours are linear light, or sRGB-encoded values (highlights kept above 1) when the spec
    blurs on gamma-encoded values (``spec.blur_space == "gamma"``).
    """
    rng = np.random.default_rng(spec.seed)
    builders = {"layers": _layers_scene, "planes": _planes_scene, "stereo": stereo_scene,
                "portrait": _portrait_scene, "night": _night_scene}
    if spec.kind not in builders:
        raise ValueError(f"unknown scene kind {spec.kind!r}; expected one of {KINDS}")
    layers = builders[spec.kind](rng, spec)
    if spec.blur_space == "gamma":
        layers = [Layer(linear_to_srgb_extended(layer.rgb), layer.alpha, layer.depth) for layer in layers]
    return Scene(layers, pad=spec.pad)
