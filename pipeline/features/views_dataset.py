"""A torch Dataset that decodes an image, reads its mask and makes its views (in DataLoader workers)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import torch

from ..images import load_rgb
from ..masks.store import MaskStore
from ..views import test_view, train_view, view_rng


class ImageViews(torch.utils.data.Dataset):
    """Item i: (full views [V,3,S,S], foreground views [V,3,S,S], areas [V], has_mask).

    Training images get V random crops + flips (V = `views`); test images
    one centre view. Without a mask the foreground views are zeros and the
    areas NaN.
    """

    def __init__(
        self,
        root: str | Path,
        impaths: Sequence[str],
        masks: MaskStore | None,
        size: int,
        mean,
        std,
        fill: str = "mean",
        views: int = 1,
        train: bool = True,
        seed: int = 0,
        require_masks: bool = True,
        crop_scale: tuple[float, float] = (0.08, 1.0),
    ) -> None:
        self.root, self.impaths, self.masks = Path(root), list(impaths), masks
        self.size, self.mean, self.std, self.fill = size, tuple(mean), tuple(std), fill
        self.views, self.train, self.seed = views if train else 1, train, seed
        self.crop_scale = tuple(crop_scale)
        if require_masks:
            absent = [p for p in self.impaths if masks is None or p not in masks]
            if absent:
                raise KeyError(
                    f"{len(absent)} images have no mask, e.g. {absent[:3]}; re-run the masks stage for these seeds"
                )

    def __len__(self) -> int:
        return len(self.impaths)

    def subset(self, start: int, stop: int) -> ImageViews:
        """Images [start, stop) with the same views each (a view depends on the seed, its index and the path)."""
        part = copy.copy(self)
        part.impaths = self.impaths[start:stop]
        return part

    def __getitem__(self, i: int):
        path = self.impaths[i]
        image = load_rgb(self.root / path)
        mask = self.masks.mask(path) if self.masks is not None and path in self.masks else None
        fulls, fgs, areas = [], [], []
        for v in range(self.views):
            if self.train:
                x, fg, a = train_view(
                    image,
                    mask,
                    view_rng(self.seed, v, path),
                    self.size,
                    self.mean,
                    self.std,
                    self.fill,
                    self.crop_scale,
                )
            else:
                x, fg, a = test_view(image, mask, self.size, self.mean, self.std, self.fill)
            fulls.append(x)
            fgs.append(fg if fg is not None else torch.zeros_like(x))
            areas.append(a)
        return torch.stack(fulls), torch.stack(fgs), torch.tensor(areas, dtype=torch.float32), mask is not None


def view_sets(
    prepared, masks: MaskStore, seeds: Sequence[int], cfg, size: int, mean, std
) -> tuple[ImageViews, ImageViews]:
    """The few-shot base training images of every seed (`cfg.views` views each) and all test images (one view).

    `cfg` is the `encode` section (pipeline.config.EncodeConfig).
    """
    train_paths = sorted(prepared.fewshot_union(list(seeds)).impath)
    test_paths = list(dict.fromkeys(prepared.test().impath))
    common = dict(size=size, mean=mean, std=std, fill=cfg.fill, seed=cfg.seed)
    train = ImageViews(
        prepared.root, train_paths, masks, views=cfg.views, train=True, crop_scale=tuple(cfg.crop_scale), **common
    )
    test = ImageViews(prepared.root, test_paths, masks, train=False, require_masks=False, **common)
    return train, test
