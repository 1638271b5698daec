"""Physically based dual-pixel (DP) defocus simulation and the ``ifan synth`` dataset writer.

Modules: :mod:`~ifan.synth.optics` (thin lens, signed circle of confusion),
:mod:`~ifan.synth.psf` (C/L/R kernels of the aperture families, disparity),
:mod:`~ifan.synth.rendering` (layered, occlusion-aware compositing, a brute-force reference,
sensor noise), :mod:`~ifan.synth.assets` (photographs and procedural textures),
:mod:`~ifan.synth.sampling` (dataset options, per-sample camera/aperture/processing draws),
:mod:`~ifan.synth.scenes` (scene builders), :mod:`~ifan.synth.rgbd` (RGB-D images as layers),
:mod:`~ifan.synth.camera` (the camera pipeline after the sensor), :mod:`~ifan.synth.writer`
(DPDD-layout datasets) and :mod:`~ifan.synth.preview` (figures).

Conventions: images are float32 ``(H, W, 3)`` in linear light (files are sRGB-encoded; renders
developed by the camera pipeline are sRGB-encoded already: ``DualPixelImages.encoding``); the
signed blur radius ``coc`` (px) is > 0 behind the focus plane; the disparity ``x_L - x_R`` (px)
is ``-kappa * coc`` (> 0 in front of the focus plane, kappa ~ 0.85); ``C = (L + R) / 2``.

Example::

    import numpy as np
    from ifan.synth import SynthConfig, sample_spec, build_scene, render
    spec = sample_spec(np.random.default_rng(0), SynthConfig(width=256, height=256))
    out = render(build_scene(spec), spec.camera, spec.profile)   # linear light, before any camera
    # the documented training mixture (PSF families, camera pipeline, portraits, night ...):
    spec = sample_spec(np.random.default_rng(0), SynthConfig.mixture(width=256, height=256))
    out.center, out.left, out.right, out.target, out.coc, out.disparity
"""

from ifan.synth.assets import PHOTOS
from ifan.synth.camera import CameraPipeline, develop
from ifan.synth.optics import ThinLensCamera
from ifan.synth.preview import preview_figure
from ifan.synth.psf import (PSF_FAMILIES, ApertureProfile, center_kernel, disparity_from_coc, disparity_per_coc,
                            dual_pixel_kernels, sample_profile)
from ifan.synth.raytrace import render_reference
from ifan.synth.rendering import DualPixelImages, Layer, Scene, SensorNoise, render
from ifan.synth.sampling import KINDS, SceneSpec, SynthConfig, sample_camera, sample_spec
from ifan.synth.rgbd import rgbd_layers
from ifan.synth.scenes import build_scene
from ifan.synth.writer import render_spec, sample_paths, sample_spec_for, write_dataset

__all__ = [
    "KINDS",
    "PHOTOS",
    "PSF_FAMILIES",
    "ApertureProfile",
    "CameraPipeline",
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
    "develop",
    "dual_pixel_kernels",
    "preview_figure",
    "render",
    "render_reference",
    "render_spec",
    "rgbd_layers",
    "sample_camera",
    "sample_paths",
    "sample_profile",
    "sample_spec",
    "sample_spec_for",
    "write_dataset",
]
