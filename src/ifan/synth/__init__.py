"""Physically based dual-pixel (DP) defocus simulation and the ``ifan synth`` dataset writer.

Modules: :mod:`~ifan.synth.optics` (thin lens, signed circle of confusion),
:mod:`~ifan.synth.psf` (C/L/R kernels, disparity), :mod:`~ifan.synth.rendering` (layered,
occlusion-aware compositing, a brute-force reference, sensor noise),
:mod:`~ifan.synth.scenes` (photo textures, procedural and RGB-D scenes, camera sampling),
:mod:`~ifan.synth.writer` (DPDD-layout datasets) and :mod:`~ifan.synth.preview` (figures).

Conventions: images are float32 ``(H, W, 3)`` in linear light (files are sRGB-encoded); the
signed blur radius ``coc`` (px) is > 0 behind the focus plane; the disparity ``x_L - x_R`` (px)
is ``-kappa * coc`` (> 0 in front of the focus plane, kappa ~ 0.85); ``C = (L + R) / 2``.

Example::

    import numpy as np
    from ifan.synth import SynthConfig, sample_spec, build_scene, render
    spec = sample_spec(np.random.default_rng(0), SynthConfig(width=256, height=256))
    out = render(build_scene(spec), spec.camera, spec.profile)
    out.center, out.left, out.right, out.target, out.coc, out.disparity
"""

from ifan.synth.optics import ThinLensCamera
from ifan.synth.preview import preview_figure
from ifan.synth.psf import ApertureProfile, center_kernel, disparity_from_coc, disparity_per_coc, dual_pixel_kernels
from ifan.synth.rendering import DualPixelImages, Layer, Scene, SensorNoise, render, render_reference
from ifan.synth.scenes import PHOTOS, SceneSpec, SynthConfig, build_scene, rgbd_layers, sample_camera, sample_spec
from ifan.synth.writer import render_spec, sample_paths, sample_spec_for, write_dataset

__all__ = [
    "PHOTOS",
    "ApertureProfile",
    "DualPixelImages",
    "Layer",
    "Scene",
    "SceneSpec",
    "SensorNoise",
    "SynthConfig",
    "ThinLensCamera",
    "build_scene",
    "center_kernel",
    "disparity_from_coc",
    "disparity_per_coc",
    "dual_pixel_kernels",
    "preview_figure",
    "render",
    "render_reference",
    "render_spec",
    "rgbd_layers",
    "sample_camera",
    "sample_paths",
    "sample_spec",
    "sample_spec_for",
    "write_dataset",
]
