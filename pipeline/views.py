"""Paired image/mask views: the same crop and flip on both, then the foreground view.

Crop parameters come from a numpy generator seeded by (seed, view, image
path), so a view depends only on its image and index: the same seed gives
the same views in any process, in any order, for any subset of images.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

BICUBIC = TF.InterpolationMode.BICUBIC
NEAREST = TF.InterpolationMode.NEAREST
FILLS = ("mean", "black", "blur")


def view_rng(seed: int, view: int, impath: str) -> np.random.Generator:
    return np.random.default_rng([seed, view, zlib.crc32(impath.encode("utf-8"))])


def sample_crop(
    rng: np.random.Generator, h: int, w: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """RandomResizedCrop's rule (10 tries, then a centre crop), drawn from `rng`."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _normalise(img: Image.Image, mean, std) -> torch.Tensor:
    return TF.normalize(TF.to_tensor(img), mean, std)


def foreground(x: torch.Tensor, mask: torch.Tensor, fill: str, mean, std) -> torch.Tensor:
    """x * m in normalised space; the background becomes the fill."""
    m = mask.to(x.dtype).unsqueeze(0)
    if fill == "mean":
        background = torch.zeros_like(x)  # CLIP's mean colour is 0 after normalisation
    elif fill == "black":
        background = ((0 - torch.tensor(mean)) / torch.tensor(std)).view(3, 1, 1).expand_as(x)
    elif fill == "blur":
        k = max(3, (x.shape[-1] // 8) | 1)
        background = TF.gaussian_blur(x, [k, k], [k / 3.0, k / 3.0])
    else:
        raise ValueError(f"unknown foreground fill {fill!r}; use one of {FILLS}")
    return x * m + background * (1 - m)


def mask_to_image(mask: np.ndarray, size_wh: tuple[int, int]) -> Image.Image:
    im = Image.fromarray(mask.astype(np.uint8) * 255)
    return im if im.size == size_wh else im.resize(size_wh, Image.NEAREST)


def train_view(
    image: Image.Image,
    mask: np.ndarray | None,
    rng: np.random.Generator,
    size: int,
    mean,
    std,
    fill: str,
    scale=(0.08, 1.0),
):
    """(full view, foreground view or None, area ratio) for one random crop + flip."""
    w, h = image.size
    top, left, ch, cw = sample_crop(rng, h, w, scale)
    flip = rng.random() < 0.5
    img = TF.resized_crop(image, top, left, ch, cw, [size, size], BICUBIC)
    if flip:
        img = TF.hflip(img)
    x = _normalise(img, mean, std)
    if mask is None:
        return x, None, float("nan")
    m = TF.resized_crop(mask_to_image(mask, (w, h)), top, left, ch, cw, [size, size], NEAREST)
    if flip:
        m = TF.hflip(m)
    mt = torch.from_numpy(np.asarray(m) > 127)
    return x, foreground(x, mt, fill, mean, std), float(mt.float().mean())


def test_view(image: Image.Image, mask: np.ndarray | None, size: int, mean, std, fill: str):
    """Resize the shorter side (bicubic), centre crop; the mask follows with nearest."""
    img = TF.center_crop(TF.resize(image, size, BICUBIC), [size, size])
    x = _normalise(img, mean, std)
    if mask is None:
        return x, None, float("nan")
    mt = test_mask(mask, image.size, size)
    return x, foreground(x, mt, fill, mean, std), float(mt.float().mean())


def test_mask(mask: np.ndarray, image_size: tuple[int, int], size: int) -> torch.Tensor:
    """A test image's mask [size, size] (bool) on its view's pixels: the view's resize and centre crop."""
    m = TF.center_crop(TF.resize(mask_to_image(mask, image_size), size, NEAREST), [size, size])
    return torch.from_numpy(np.asarray(m) > 127)
