"""Dataset registry: `load_dataset(name, root)` is the only entry point."""

from __future__ import annotations

from pathlib import Path

from .base import DatasetLayoutError, DatasetSplits, Item
from .coop import (
    DATASET_DIRS,
    ZHOU_LAYOUTS,
    ZhouLayout,
    read_fgvc_aircraft,
    read_imagefolder,
    read_imagenet,
    read_zhou_split,
)
from .synthetic import SPLIT_FILE as _SYNTHETIC_SPLIT
from .synthetic import is_synthetic
from .templates import template_for

COOP_DATASETS = (
    "imagenet",
    "caltech101",
    "oxford_pets",
    "stanford_cars",
    "oxford_flowers",
    "food101",
    "fgvc_aircraft",
    "sun397",
    "dtd",
    "eurosat",
    "ucf101",
)
DATASETS = COOP_DATASETS + ("imagefolder", "synthetic")
KNOWN = ", ".join(DATASETS) + ", synthetic_<name> (a variant of the built-in benchmark)"


def is_known(name: str) -> bool:
    """A dataset the pipeline can prepare: CoOp's eleven, an image folder, the built-in benchmark and its
    variants (`synthetic_<name>`, each generated from its own `prepare.overrides.<name>.synthetic`)."""
    return name in DATASETS or is_synthetic(name)


def dataset_root(name: str, data_root: str | Path, override: str | Path | None = None) -> Path:
    """Where a dataset lives: an explicit override, else CoOp's `<DATA>/<dataset_dir>`."""
    if override:
        return Path(override)
    return Path(data_root) / DATASET_DIRS.get(name, name)


def load_dataset(name: str, root: str | Path) -> DatasetSplits:
    if not is_known(name):
        raise KeyError(f"unknown dataset {name!r}; known: {KNOWN}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(
            f"{name}: dataset folder {root} does not exist. Set prepare.data_root to your CoOp DATA folder "
            f"(expected {root.name}/ inside it) or prepare.roots.{name} to the dataset folder itself."
        )
    if name == "imagenet":
        return read_imagenet(root)
    if name == "fgvc_aircraft":
        return read_fgvc_aircraft(root)
    if name == "imagefolder":
        return read_imagefolder(root)
    if is_synthetic(name):
        return read_zhou_split(name, root, ZhouLayout("synthetic", "images", _SYNTHETIC_SPLIT))
    return read_zhou_split(name, root, ZHOU_LAYOUTS[name])


__all__ = [
    "DATASETS",
    "KNOWN",
    "is_known",
    "is_synthetic",
    "COOP_DATASETS",
    "DatasetLayoutError",
    "DatasetSplits",
    "Item",
    "dataset_root",
    "load_dataset",
    "template_for",
]
