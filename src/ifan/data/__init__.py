"""Datasets (DPDD, RealDOF, CUHK, PixelDP, folders) and the paper's augmentations."""

from ifan.data.augment import AugmentConfig, augment
from ifan.data.datasets import LAYOUTS, VIEWS, DatasetError, DefocusDataset, SampleFiles, open_dataset

__all__ = ["LAYOUTS", "VIEWS", "AugmentConfig", "DatasetError", "DefocusDataset", "SampleFiles", "augment",
           "open_dataset"]
