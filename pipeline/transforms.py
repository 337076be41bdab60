"""The CLIP-style transforms the backbones train and test with, and the labelled image dataset they read."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torchvision import transforms as T

from .images import load_rgb

BICUBIC = T.InterpolationMode.BICUBIC


def test_transform(size: int, mean, std) -> T.Compose:
    """Resize the shorter side to `size` (bicubic), centre crop, normalise."""
    return T.Compose([T.Resize(size, interpolation=BICUBIC), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])


def train_transform(kind: str, size: int, mean, std, crop_scale: tuple[float, float] = (0.08, 1.0)) -> T.Compose:
    """Dassl's training transforms for the lists the backbones' configs use.

    `resize`: Dassl's ["center_crop", "normalize"]. With no random crop listed, Dassl's training transform
    first resizes to (size, size), a squash that keeps the whole image, so its centre crop is a no-op.
    `crop_flip`: ["random_resized_crop", "random_flip", "normalize"], RandomResizedCrop(scale `crop_scale`,
    Dassl's default 0.08-1, bicubic) + horizontal flip.
    """
    if kind == "resize":
        return T.Compose([T.Resize((size, size), interpolation=BICUBIC), T.ToTensor(), T.Normalize(mean, std)])
    if kind == "crop_flip":
        return T.Compose(
            [
                T.RandomResizedCrop(size, scale=tuple(crop_scale), interpolation=BICUBIC),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(mean, std),
            ]
        )
    raise ValueError(f"unknown train augmentation {kind!r}; use resize or crop_flip")


class LabelledImages(torch.utils.data.Dataset):
    def __init__(self, root: str | Path, paths: Sequence[str], labels: Sequence[int], transform) -> None:
        self.root, self.paths, self.labels, self.transform = Path(root), list(paths), list(labels), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.transform(load_rgb(self.root / self.paths[i])), self.labels[i]
