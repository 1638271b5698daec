"""Defocus deblurring datasets: DPDD, RealDOF, CUHK, PixelDP and plain folders.

Layouts (files are matched by name, without the suffix):

* **DPDD** (Abuolaim & Brown, 2020; also what ``ifan synth`` writes)::

      ROOT/{train,val,test}_c/source/NAME.png   blurry centre (combined) image
      ROOT/{train,val,test}_c/target/NAME.png   all-in-focus target
      ROOT/{train,val,test}_l/source/NAME.png   left dual-pixel view
      ROOT/{train,val,test}_r/source/NAME.png   right dual-pixel view

  8-bit or 16-bit PNG (the 16-bit release is read at full precision).
* **RealDOF** (Lee et al., 2021): ``ROOT/source/NAME``, ``ROOT/target/NAME``.
* **CUHK** (Shi et al., 2014; blur detection set, no targets): every image under ``ROOT``.
* **PixelDP** (Abuolaim & Brown; Pixel 4 DP captures, no targets):
  ``ROOT/test_c``, ``ROOT/test_l``, ``ROOT/test_r`` (images directly inside or in a
  ``source`` folder). The official evaluation rotates them 90 degrees counter-clockwise before
  the network and rotates the output back; so does this loader (``rotated`` in the sample).
* **folder**: ``ROOT/source`` + ``ROOT/target`` pairs, or every image in ``ROOT`` (inputs only).

Every problem (missing folder, unmatched file, views of different sizes, unreadable image) is
reported as a :class:`DatasetError` naming the file, before any compute starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from torch.utils.data import Dataset

from ifan.data.augment import AugmentConfig, augment
from ifan.io import READ_SUFFIXES, ImageReadError, read_image, to_unit_float

VIEWS = ("c", "gt", "l", "r")  # blurry centre, all-in-focus target, left and right dual-pixel views


class DatasetError(ValueError):
    """A dataset folder that is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class SampleFiles:
    """The files of one sample: blurry input ``c``, optional target ``gt`` and DP views ``l``, ``r``,
    and for ``ifan synth`` data optionally its maps (``maps``: the ``.npz`` with the true disparity)."""

    name: str
    c: Path
    gt: Path | None = None
    l: Path | None = None  # noqa: E741 (the dual-pixel left view)
    r: Path | None = None
    maps: Path | None = None

    def paths(self) -> dict[str, Path]:
        return {k: getattr(self, k) for k in VIEWS if getattr(self, k) is not None}


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (sorted; hidden files skipped)."""
    if not folder.is_dir():
        raise DatasetError(f"missing folder: {folder}")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern)
                  if p.is_file() and p.suffix.lower() in READ_SUFFIXES and not p.name.startswith("."))


def _by_name(folder: Path, recursive: bool = False) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in list_images(folder, recursive):
        if path.stem in files:
            raise DatasetError(f"two files named {path.stem!r} in {folder}: {files[path.stem].name}, {path.name}")
        files[path.stem] = path
    if not files:
        raise DatasetError(f"no images in {folder} (looked for {', '.join(sorted(READ_SUFFIXES))})")
    return files


def match_views(folders: dict[str, Path], recursive: bool = False) -> list[SampleFiles]:
    """Match the images of several folders by name; every name must be in every folder."""
    listed = {view: _by_name(folder, recursive) for view, folder in folders.items()}
    names = set().union(*(set(v) for v in listed.values()))
    problems = []
    for view, files in listed.items():
        missing = sorted(names - set(files))
        if missing:
            problems.append(f"{folders[view]} lacks {len(missing)} file(s) that the other folders have: "
                            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if problems:
        raise DatasetError("unmatched files: " + "; ".join(problems))
    return [SampleFiles(name, **{view: listed[view][name] for view in folders}) for name in sorted(names)]


def dpdd_files(root: str | os.PathLike, split: str = "test", views: bool = True,
               maps: bool = False) -> list[SampleFiles]:
    """Samples of a DPDD-layout split (``train``, ``val`` or ``test``); with ``maps``, each with the
    ``{split}_meta/NAME.npz`` that ``ifan synth`` writes beside it (true disparity, blur, depth)."""
    root = Path(root)
    folders = {"c": root / f"{split}_c" / "source", "gt": root / f"{split}_c" / "target"}
    if views:
        folders.update(l=root / f"{split}_l" / "source", r=root / f"{split}_r" / "source")
    samples = match_views(folders)
    if not maps:
        return samples
    meta = root / f"{split}_meta"
    missing = [s.name for s in samples if not (meta / f"{s.name}.npz").is_file()]
    if missing:
        raise DatasetError(f"{meta} lacks the maps of {len(missing)} sample(s) ({', '.join(missing[:5])}); the true "
                           f"disparity comes with ifan synth data only")
    return [replace(s, maps=meta / f"{s.name}.npz") for s in samples]


def realdof_files(root: str | os.PathLike) -> list[SampleFiles]:
    root = Path(root)
    return match_views({"c": root / "source", "gt": root / "target"})


def cuhk_files(root: str | os.PathLike) -> list[SampleFiles]:
    root = Path(root)
    return [SampleFiles(p.stem, c=p) for p in _by_name(root, recursive=True).values()]


def pixeldp_files(root: str | os.PathLike) -> list[SampleFiles]:
    root = Path(root)

    def folder(view: str) -> Path:
        base = root / f"test_{view}"
        return base / "source" if (base / "source").is_dir() else base

    return match_views({"c": folder("c"), "l": folder("l"), "r": folder("r")}, recursive=True)


def folder_files(root: str | os.PathLike) -> list[SampleFiles]:
    root = Path(root)
    if (root / "source").is_dir() and (root / "target").is_dir():
        return realdof_files(root)
    return [SampleFiles(p.stem, c=p) for p in _by_name(root).values()]


LAYOUTS: dict[str, Callable[..., list[SampleFiles]]] = {
    "dpdd": dpdd_files,
    "realdof": realdof_files,
    "cuhk": cuhk_files,
    "pixeldp": pixeldp_files,
    "folder": folder_files,
}


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file header (no decoding)."""
    try:
        with PILImage.open(path) as img:
            return img.size
    except Exception as err:  # noqa: BLE001 (Pillow raises many types for a bad header)
        raise DatasetError(f"{path}: unreadable image ({err})") from err


def check_sizes(files: list[SampleFiles]) -> dict[str, tuple[int, int]]:
    """Check that the views of each sample have one size; returns ``name -> (width, height)``."""
    sizes = {}
    for sample in files:
        found = {view: image_size(p) for view, p in sample.paths().items()}
        if len(set(found.values())) > 1:
            detail = ", ".join(f"{sample.paths()[v].name} ({v}) {w}x{h}" for v, (w, h) in found.items())
            raise DatasetError(f"views of sample {sample.name!r} differ in size: {detail}")
        sizes[sample.name] = found["c"]
    return sizes


#: Decoded images of every dataset made with ``cache=True`` in this process, keyed by their files:
#: datasets over the same files (successive runs of one process, e.g. ablations) decode them once.
_DECODED: dict = {}


class DefocusDataset(Dataset):
    """Samples as dicts of ``(3, H, W)`` float32 tensors in [0, 1].

    Args:
        files: the samples (from one of :data:`LAYOUTS`).
        crop: side of the random training crop (None: whole images).
        augment_cfg: augmentations (None: none).
        seed: base seed; an item's randomness comes from ``(seed, key)``.
        rotate: rotate every view 90 degrees counter-clockwise (PixelDP protocol).
        cache: keep decoded images in memory (as their 8/16-bit integers), shared by every dataset of
            this process over the same files.
        min_size: refuse images smaller than this (e.g. the crop), naming them.

    Items can be fetched by index, or by ``(index, sample_seed)`` so that a sampler controls
    the augmentation draws. An item holds ``name``, ``c``, the available of ``gt``, ``l``,
    ``r``, ``bit_depth`` and ``rotated``.
    """

    def __init__(self, files: list[SampleFiles], crop: int | None = None, augment_cfg: AugmentConfig | None = None,
                 seed: int = 0, rotate: bool = False, cache: bool = False, min_size: int | None = None) -> None:
        if not files:
            raise DatasetError("the dataset is empty")
        self.files = list(files)
        self.crop, self.augment_cfg, self.seed, self.rotate = crop, augment_cfg, seed, rotate
        self.sizes = check_sizes(self.files)
        limit = min_size if min_size is not None else crop
        if limit:
            small = [f"{n} ({w}x{h})" for n, (w, h) in self.sizes.items() if min(w, h) < limit]
            if small:
                raise DatasetError(f"{len(small)} image(s) smaller than {limit}x{limit}: {', '.join(small[:5])}")
        self._cache: dict | None = _DECODED if cache else None

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> tuple[dict[str, np.ndarray], int]:
        key = (self.files[index], self.rotate)
        if self._cache is not None and key in self._cache:
            stored, depth = self._cache[key]
            views = dict(stored)  # integers: augment converts only the crop's window
            if self.files[index].maps is not None:
                views["disparity"] = self._disparity(index)
            return views, depth
        sample = self.files[index]
        views, depth = {}, 8
        for view, path in sample.paths().items():
            try:
                img = read_image(path)
            except ImageReadError as err:
                raise DatasetError(str(err)) from err
            views[view], depth = img.rgb, max(depth, img.bit_depth)
        if self.rotate:
            views = {k: np.ascontiguousarray(np.rot90(v, 1)) for k, v in views.items()}
        if self._cache is not None:
            scale, dtype = (255.0, np.uint8) if depth == 8 else (65535.0, np.uint16)
            self._cache[key] = ({k: np.round(v * scale).astype(dtype) for k, v in views.items()}, depth)
        if sample.maps is not None:
            views["disparity"] = self._disparity(index)
        return views, depth

    def _disparity(self, index: int) -> np.ndarray:
        """The true L-R disparity (px) of a synthetic sample, ``(H, W, 1)`` float32 (cached as float16)."""
        key = ("disparity", self.files[index].maps)
        if self._cache is not None and key in self._cache:
            return self._cache[key].astype(np.float32)
        path = self.files[index].maps
        try:
            with np.load(path) as maps:
                disparity = np.asarray(maps["disparity"], np.float32)[..., None]
        except (OSError, KeyError, ValueError) as err:
            raise DatasetError(f"{path}: cannot read the disparity map ({err})") from err
        if self.rotate:
            raise DatasetError("rotated datasets (PixelDP) have no disparity maps")
        if self._cache is not None:
            self._cache[key] = disparity.astype(np.float16)
        return disparity

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, sample_seed = (key, index_seed(self.seed, key)) if isinstance(key, int) else key
        views, depth = self._load(index)
        if self.augment_cfg is not None or self.crop is not None:
            rng = np.random.default_rng(sample_seed)
            views = augment(views, rng, self.augment_cfg or NO_AUGMENT, self.crop)
        else:
            views = {k: to_unit_float(v) for k, v in views.items()}
        item = {k: torch.from_numpy(np.ascontiguousarray(v.transpose(2, 0, 1))) for k, v in views.items()}
        item.update(name=self.files[index].name, bit_depth=depth, rotated=self.rotate)
        return item


NO_AUGMENT = replace(AugmentConfig(), noise_p=0.0, gray_p=0.0, scale_p=0.0)


def index_seed(seed: int, index: int) -> int:
    """A per-item seed derived from a base seed and an index."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def open_dataset(kind: str, root: str | os.PathLike, split: str = "test", **kwargs) -> DefocusDataset:
    """Build a :class:`DefocusDataset` for a layout name (``dpdd``, ``realdof``, ``cuhk``,
    ``pixeldp``, ``folder``); ``split`` applies to DPDD."""
    kind = kind.lower()
    if kind not in LAYOUTS:
        raise DatasetError(f"unknown dataset kind {kind!r}; expected one of {', '.join(LAYOUTS)}")
    if not Path(root).is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a folder")
    files = LAYOUTS[kind](root, split) if kind == "dpdd" else LAYOUTS[kind](root)
    if kind == "pixeldp":
        kwargs.setdefault("rotate", True)
    return DefocusDataset(files, **kwargs)
