"""A run's data: the training and validation sets of a recipe, and how validation scores a model on them.

Every file problem surfaces in :func:`build_datasets`, before any compute. :func:`validate` runs the
network through the inference path (:class:`~ifan.inference.Deblurrer`, float32), as ``ifan deblur``
and ``ifan evaluate`` run it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ifan.data.augment import AugmentConfig
from ifan.data.datasets import VIEWS, DefocusDataset, dpdd_files, folder_files
from ifan.evaluate.metrics import psnr
from ifan.inference import Deblurrer
from ifan.models.ifan import IFAN
from ifan.train.config import ConfigError, DataConfig
from ifan.viz import colorize_defocus


def build_datasets(data: DataConfig, augment: AugmentConfig, patch_size: int, seed: int, views: bool,
                   maps: bool = False) -> tuple[DefocusDataset, DefocusDataset | None]:
    """The training set (random ``patch_size`` crops, augmented) and the validation set (None when
    the recipe's data has no validation split).

    Args:
        data: the recipe's ``data`` section.
        views: read the dual-pixel views (the DME loss, the disparity loss or a dual-pixel model needs them).
        maps: read the true disparity maps (the disparity loss).

    Raises:
        ConfigError: no ``data.root``, or no such folder; a folder layout without targets.
        DatasetError: a split that misses files.
    """
    root = Path(data.root).expanduser()
    if not data.root:
        raise ConfigError("data.root is not set: point it at a DPDD-layout folder (e.g. made by `ifan synth`)")
    if not root.is_dir():
        raise ConfigError(f"data.root {root} does not exist")
    if data.kind == "dpdd":
        train_files = dpdd_files(root, data.train_split, views=views, maps=maps)
    else:
        train_files = folder_files(root)
        if not all(f.gt is not None for f in train_files):
            raise ConfigError(f"{root}: data.kind 'folder' needs source/ and target/ subfolders for training")
    train_set = DefocusDataset(train_files, crop=patch_size, augment_cfg=augment, seed=seed, cache=data.cache)
    val_root = Path(data.val_root).expanduser() if data.val_root else root
    val_set = None
    if data.kind == "dpdd" and (val_root / f"{data.val_split}_c").is_dir():
        val_files = dpdd_files(val_root, data.val_split, views=views)
        if data.val_count:
            val_files = val_files[: data.val_count]
        val_set = DefocusDataset(val_files)
    return train_set, val_set


def _center_crop(x: Tensor, size: int | None) -> Tensor:
    if size is None:
        return x
    h, w = x.shape[-2:]
    th, tw = min(size, h), min(size, w)
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top:top + th, left:left + tw]


@torch.no_grad()
def validate(model: IFAN, val_set: DefocusDataset, device: torch.device, crop: int | None,
             channels_last: bool) -> dict:
    """Mean PSNR (output clipped to [0, 1]) and the input's PSNR on centre crops of side ``crop``;
    one image grid (input | output | target | defocus map) of the first image."""
    was_training = model.training
    deblurrer = Deblurrer(model, device=device, precision="fp32", channels_last=channels_last, cpu_heap=False)
    psnrs, inputs, grid = [], [], None
    for i in range(len(val_set)):
        item = val_set[i]
        views = {k: _center_crop(item[k], crop)[None] for k in VIEWS if k in item}
        dual = model.config.dual_pixel_input
        res = deblurrer.run(views["c"], defocus=i == 0, right=views.get("r") if dual else None,
                            left=views.get("l") if dual else None)
        result = res.image.clamp(0, 1)
        psnrs.append(float(psnr(result, views["gt"])[0]))
        inputs.append(float(psnr(views["c"], views["gt"])[0]))
        if i == 0:
            defocus_rgb, _ = colorize_defocus(res.defocus[0, 0].numpy())
            grid = torch.cat([views["c"], result, views["gt"], torch.from_numpy(defocus_rgb).permute(2, 0, 1)[None]],
                             dim=-1)[0]
    model.train(was_training)
    return {"psnr": sum(psnrs) / len(psnrs), "psnr_input": sum(inputs) / len(inputs), "grid": grid}
