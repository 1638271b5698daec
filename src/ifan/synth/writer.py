"""Write synthetic dual-pixel datasets in the DPDD folder layout.

Layout (``NAME`` = ``000000``, ``000001``, ... identical across the five folders of a split)::

    OUT/manifest.json                 every parameter, the conventions, per-sample settings
    OUT/{split}_c/source/NAME.png     C, the defocused centre image
    OUT/{split}_c/target/NAME.png     the all-in-focus target
    OUT/{split}_l/source/NAME.png     L, the left dual-pixel view
    OUT/{split}_r/source/NAME.png     R, the right dual-pixel view
    OUT/{split}_meta/NAME.npz         depth (m), coc (signed blur radius, px), disparity (x_L - x_R, px)

Images are sRGB-encoded PNGs (8-bit by default, or 16-bit) of linear renders, or of renders
developed by a camera pipeline (:mod:`ifan.synth.camera`, per-sample settings in the manifest); the maps are
float32 at full resolution, rounded to 14 mantissa bits (relative precision 3e-5: 0.0006 px at a
20 px blur, 0.3 mm at 10 m) so that they deflate 2.5x better. Each file is written atomically
and the ``.npz`` last, so its presence marks a complete sample: an interrupted run resumes where it
stopped, and a larger count extends a dataset. Sample ``i`` of a split is drawn from ``(seed, split, i)``
alone, so the files do not depend on the number of worker processes.

The run starts rendering at once, whatever the counts: ``manifest.json`` first records the parameters (what
a resumed run is checked against); every sample's settings are streamed into it once all samples are
complete. Before anything, the image size is checked against the memory: a sample takes up to
:data:`RENDER_BYTES_PER_PIXEL` per output pixel to render, in each worker (:func:`check_render_memory`).
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ifan.fileutil import atomic_write, atomic_write_bytes, remove_stale_temps
from ifan.io import encode_png_pixels
from ifan.ram import available_ram
from ifan.synth.assets import PHOTOS
from ifan.synth.camera import CameraPipeline, develop
from ifan.synth.color import encode_srgb
from ifan.synth.rendering import DualPixelImages, render
from ifan.synth.sampling import SceneSpec, SynthConfig, sample_spec
from ifan.synth.scenes import build_scene

FORMAT = "ifan-synth/1"
# Peak memory of rendering and writing one sample, per output pixel: measured (peak RSS growth in a fresh
# process) 160-570 bytes at 1024x1024 over 34 samples of the default and the documented mixture, up to 650
# at 256x256; this bound keeps a margin for scenes with more layers.
RENDER_BYTES_PER_PIXEL = 1024
SPLITS = ("train", "val", "test")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

CONVENTIONS = {
    "images": "sRGB-encoded PNG of a render in linear light; C = (L + R) / 2 in linear light "
              "(a dual-pixel value is the sum of its two photodiodes; each view has C's exposure); "
              "a sample with a 'pipeline' was developed by it (tone, sharpening, resizing identical for "
              "C, L, R and the target; JPEG on C only), a sample with blur_space 'gamma' was blurred "
              "on sRGB-encoded values",
    "coc": "signed circle-of-confusion radius in output pixels: > 0 behind the focus plane (Z > S), "
           "< 0 in front; coc = K (1 - S / Z) with K = f^2 / (2 N (S - f) pixel_pitch)",
    "disparity": "x_L - x_R of a scene point in pixels = -kappa * coc (kappa ~ 0.8-0.87, from the aperture "
                 "profile): > 0 in front of the focus plane, < 0 behind, like a stereo pair converged on it",
    "views": "L is the image through the left half of the aperture (as the photographer sees the scene): "
             "behind the focus plane its light lands left of the sharp image",
    "depth": "metres, of the visible surface (nearest layer with coverage >= 0.5)",
}


@dataclass(frozen=True)
class SamplePaths:
    """The five files of one sample."""

    center: Path
    target: Path
    left: Path
    right: Path
    meta: Path

    @property
    def images(self) -> tuple[Path, Path, Path, Path]:
        return self.center, self.target, self.left, self.right

    def complete(self) -> bool:
        return self.meta.exists() and all(p.exists() for p in self.images)


def sample_name(index: int) -> str:
    """File stem of sample ``index`` (the same in every folder of a split)."""
    return f"{index:06d}"


def sample_paths(out: str | os.PathLike, split: str, index: int) -> SamplePaths:
    """Where sample ``index`` of ``split`` lives under ``out`` (DPDD layout)."""
    out, name = Path(out), sample_name(index)
    return SamplePaths(center=out / f"{split}_c" / "source" / f"{name}.png",
                       target=out / f"{split}_c" / "target" / f"{name}.png",
                       left=out / f"{split}_l" / "source" / f"{name}.png",
                       right=out / f"{split}_r" / "source" / f"{name}.png",
                       meta=out / f"{split}_meta" / f"{name}.npz")


def sample_spec_for(seed: int, split: str, index: int, config: SynthConfig) -> SceneSpec:
    """The spec of sample ``index`` of ``split``: a function of ``(seed, split, index, config)`` only."""
    if split not in _SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_IDS[split], index]))
    return sample_spec(rng, config)


def render_spec(spec: SceneSpec) -> DualPixelImages:
    """Build and render the scene of ``spec`` (noise drawn from the spec's seed).

    Returns linear renders (``encoding="linear"``) for a spec that blurs in linear light with no
    camera pipeline (every ifan 0.1 spec), and developed, sRGB-encoded images otherwise.
    """
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 1]))
    images = render(build_scene(spec), spec.camera, spec.profile, spec.noise, rng, spec.lens_sigma)
    if spec.pipeline is None and spec.blur_space == "linear" and spec.out_size is None:
        return images
    return develop(images, spec.pipeline or CameraPipeline(), spec.blur_space, spec.out_size)


def _write_png(path: Path, image: np.ndarray, bit_depth: int, encoding: str = "linear") -> None:
    """Atomically write ``(H, W, 3)`` floats, linear (sRGB-encoded here) or already encoded, as an
    sRGB PNG with fast (level-1) deflate (level 6, the default, takes ~3.5x longer at 512 x 512
    for 20 % smaller files)."""
    if encoding == "linear":
        pixels = encode_srgb(image, bit_depth)
    else:
        scale, dtype = (255.0, np.uint8) if bit_depth == 8 else (65535.0, np.uint16)
        pixels = np.round(np.clip(image, 0.0, 1.0) * scale).astype(dtype)
    atomic_write_bytes(path, encode_png_pixels(pixels, compress_level=1))


MAP_MANTISSA_BITS = 14


def _round_mantissa(x: np.ndarray, bits: int = MAP_MANTISSA_BITS) -> np.ndarray:
    """float32 values rounded to ``bits`` mantissa bits (to nearest; relative error <= 2**-(bits+1))."""
    drop = 23 - bits
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + np.uint32(1 << (drop - 1))) & np.uint32((0xFFFFFFFF >> drop) << drop)
    return rounded.view(np.float32)


def _write_maps(path: Path, maps: Mapping[str, np.ndarray]) -> None:
    """Atomically write an ``.npz`` (``np.load`` reads it) of float32 maps (see :func:`_round_mantissa`)."""

    def save(f) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for key, value in maps.items():
                with archive.open(f"{key}.npy", "w") as f:
                    np.lib.format.write_array(f, _round_mantissa(value), allow_pickle=False)

    atomic_write(path, save)


def write_sample(paths: SamplePaths, images: DualPixelImages, bit_depth: int = 8) -> None:
    """Write one rendered sample: the four PNGs, then the maps (which mark the sample complete)."""
    for path, image in zip(paths.images, (images.center, images.target, images.left, images.right)):
        _write_png(path, image, bit_depth, images.encoding)
    _write_maps(paths.meta, {"depth": images.depth, "coc": images.coc, "disparity": images.disparity})


def _render_and_write(out: str, split: str, index: int, seed: int, config: SynthConfig, bit_depth: int) -> float:
    start = time.perf_counter()
    spec = sample_spec_for(seed, split, index, config)
    write_sample(sample_paths(out, split, index), render_spec(spec), bit_depth)
    return time.perf_counter() - start


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _parameters(config: SynthConfig, seed: int, bit_depth: int) -> dict:
    return {"seed": int(seed), "bit_depth": int(bit_depth), "config": config.to_dict()}


def _same_parameters(recorded: dict | None, config: SynthConfig, seed: int, bit_depth: int) -> bool:
    """Whether a manifest's parameters are these; options it does not record (made by an older ifan)
    count as their defaults, which reproduce what that version made."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("config"), dict):
        return False
    defaults = SynthConfig().to_dict()
    filled = {**recorded, "config": {**{k: defaults[k] for k in defaults if k not in recorded["config"]},
                                     **recorded["config"]}}
    return filled == _parameters(config, seed, bit_depth)


def _header(config: SynthConfig, seed: int, bit_depth: int, counts: Mapping[str, int]) -> dict:
    from ifan import __version__

    return {
        "format": FORMAT,
        "ifan_version": __version__,
        "parameters": _parameters(config, seed, bit_depth),
        "counts": dict(counts),
        "conventions": CONVENTIONS,
        "photos": {name: {"loader": f"skimage.data.{p.loader}", "licence": p.licence, "source": p.source}
                   for name, p in PHOTOS.items()},
    }


def _write_manifest(path: Path, header: dict, seed: int = 0, config: SynthConfig | None = None) -> None:
    """Write the manifest atomically: the ``header``, and with ``config`` every sample's settings, streamed
    (one sample's spec at a time: memory does not grow with the counts)."""

    def write(f) -> None:
        head = json.dumps(header, indent=1)
        if config is None:
            f.write(head.encode())
            return
        f.write(head[:-2].encode() + b',\n "samples": {')
        for n, (split, count) in enumerate(header["counts"].items()):
            f.write(f'{"," if n else ""}\n  "{split}": ['.encode())
            for i in range(count):
                entry = dict(name=sample_name(i), **sample_spec_for(seed, split, i, config).to_dict())
                f.write(("," if i else "").encode() + b"\n   " + json.dumps(entry).encode())
            f.write(b"\n  ]")
        f.write(b"\n }\n}\n")

    atomic_write(path, write)


def _read_header(path: Path) -> dict:
    """The entries of a manifest before its ``samples`` (the parameters, counts, ...), read from the start
    of the file only, so that a manifest of a million samples is not loaded to check its parameters.

    Raises:
        ValueError: not a dataset manifest (one line naming the file).
    """
    decoder, found = json.JSONDecoder(), {}
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(2**20)
        pos = text.index("{") + 1
        while True:
            pos = len(text) - len(text[pos:].lstrip(" \n\r\t,"))
            if text.startswith("}", pos):
                return found
            key, pos = decoder.raw_decode(text, pos)
            pos = text.index(":", pos) + 1
            pos = len(text) - len(text[pos:].lstrip())
            if key == "samples":
                return found
            found[key], pos = decoder.raw_decode(text, pos)
    except (OSError, ValueError, RecursionError, TypeError) as err:
        why = getattr(err, "strerror", None) or ("nested too deeply" if isinstance(err, RecursionError) else
                                                 "not the JSON object ifan synth writes")
        raise ValueError(f"{path}: not a dataset manifest ({why}); use another --out") from None


def check_render_memory(config: SynthConfig, workers: int, available: int | None = None) -> None:
    """Refuse an image size whose samples cannot be rendered in the memory available (``available``
    bytes; default: what the system has now): each of ``workers`` processes needs up to
    :data:`RENDER_BYTES_PER_PIXEL` per pixel.

    Raises:
        ValueError: one line with the size, the memory it needs and what is there.
    """
    available = available_ram() if available is None else available
    need = RENDER_BYTES_PER_PIXEL * config.width * config.height
    if available is None or need * workers <= available:
        return
    size, gib = f"{config.width}x{config.height}", 2**30
    if need > available:
        raise ValueError(f"--size {size}: a sample of {config.width * config.height / 1e6:.3g} MP needs up to "
                         f"{need / gib:.1f} GiB to render ({RENDER_BYTES_PER_PIXEL} bytes per pixel), and "
                         f"{available / gib:.1f} GiB are available; choose a smaller --size")
    raise ValueError(f"--size {size} with {workers} workers needs up to {need * workers / gib:.1f} GiB "
                     f"({need / gib:.1f} GiB each), and {available / gib:.1f} GiB are available; "
                     f"use --workers {available // need} or fewer")


def write_dataset(out: str | os.PathLike, counts: Mapping[str, int], config: SynthConfig = SynthConfig(),
                  seed: int = 0, bit_depth: int = 8, workers: int = 1, progress: bool = True) -> Path:
    """Render and write a synthetic dual-pixel dataset in the DPDD layout (see the module docs).

    Args:
        out: output folder (created).
        counts: samples per split, e.g. ``{"train": 1000, "val": 50, "test": 50}``.
        config: image size, blur range, noise and scene mix.
        seed: dataset seed; sample ``i`` of a split depends only on ``(seed, split, i, config)``.
        bit_depth: 8 or 16 (PNG).
        workers: processes rendering in parallel (each with single-threaded OpenCV/BLAS). They are
            spawned, so a script calling this with ``workers > 1`` needs the usual
            ``if __name__ == "__main__":`` guard.
        progress: show a tqdm progress bar.

    Returns:
        The manifest's path. Samples already complete under ``out`` are kept (resume); an existing
        manifest with other parameters (seed, bit depth, config) is refused.

    Raises:
        ValueError: a bad argument, an image size the memory cannot render (:func:`check_render_memory`),
            or an ``out`` holding another dataset.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit depth must be 8 or 16, got {bit_depth}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    for split, n in counts.items():
        if split not in _SPLIT_IDS or n < 0:
            raise ValueError(f"counts must map splits {SPLITS} to non-negative numbers, got {dict(counts)}")
    check_render_memory(config, workers)
    out = Path(out)
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        old = _read_header(manifest_path)
        if old.get("format") != FORMAT or not _same_parameters(old.get("parameters"), config, seed, bit_depth):
            raise ValueError(f"{out} holds a dataset made with other parameters ({old.get('parameters')}); "
                             f"use another --out, or the same seed, size, blur, noise and bit depth")
        counts = {**(old.get("counts") if isinstance(old.get("counts"), dict) else {}), **counts}
    out.mkdir(parents=True, exist_ok=True)
    counts = {s: int(counts[s]) for s in SPLITS if s in counts}
    header = _header(config, seed, bit_depth, counts)
    _write_manifest(manifest_path, header)  # the parameters, before any sample

    _remove_temporaries(out, counts)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(counts.values()), unit="img", desc=f"ifan synth {out}", dynamic_ncols=True)
    try:
        todo = _missing(out, counts, bar)
        if workers == 1:
            for split, i in todo:
                _render_and_write(str(out), split, i, seed, config, bit_depth)
                if bar is not None:
                    bar.update()
        else:
            _run_pool(todo, str(out), seed, config, bit_depth, workers, bar)
    finally:
        if bar is not None:
            bar.close()
    _write_manifest(manifest_path, header, seed, config)  # every sample's settings, now that all are there
    return manifest_path


def _missing(out: Path, counts: Mapping[str, int], bar) -> Iterator[tuple[str, int]]:
    """The samples still to render, found one by one (the bar counts those already complete)."""
    for split, n in counts.items():
        for i in range(n):
            if not sample_paths(out, split, i).complete():
                yield split, i
            elif bar is not None:
                bar.update()


def _remove_temporaries(out: Path, splits) -> None:
    """Delete the temporary files a killed run left beside our outputs (never a live writer's)."""
    for split in splits:
        paths = sample_paths(out, split, 0)
        for folder in {p.parent for p in (*paths.images, paths.meta)}:
            remove_stale_temps(folder)


def _run_pool(todo, out: str, seed: int, config: SynthConfig, bit_depth: int, workers: int, bar) -> None:
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})  # inherited by the workers, spawned on demand
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=_init_worker) as pool:
            pending: set = set()
            try:  # a few samples queued per worker, not the whole count
                for split, i in todo:
                    pending.add(pool.submit(_render_and_write, out, split, i, seed, config, bit_depth))
                    if len(pending) >= 2 * workers:
                        pending = _collect(pending, bar, FIRST_COMPLETED)
                _collect(pending, bar)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _collect(pending: set, bar, return_when: str = "ALL_COMPLETED") -> set:
    """Wait for some (``FIRST_COMPLETED``) or all of ``pending``, raise the first error: what is left."""
    done, left = wait(pending, return_when=return_when)
    for future in done:
        future.result()
        if bar is not None:
            bar.update()
    return left

