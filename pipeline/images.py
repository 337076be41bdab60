"""Reading images as 8-bit RGB (PIL and numpy only: the stages that only read images do not import torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageReadError(OSError):
    pass


def load_rgb(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return to_rgb(im)
    except (FileNotFoundError, UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB.

    `convert("RGB")` clips 16-bit and float pixels at 255, which turns a
    16-bit PNG white; those modes are scaled to 8 bits first.
    """
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        return Image.fromarray(_scale_to_uint8(np.asarray(im, dtype=np.float64), im.mode)).convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # PIL warns on palette transparency converted straight to RGB
    return im.convert("RGB")


def _scale_to_uint8(pixels: np.ndarray, mode: str) -> np.ndarray:
    """16-bit modes by their full range; 32-bit int and float by the range the values use."""
    pixels = np.nan_to_num(pixels, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    top = float(pixels.max(initial=0))
    if mode.startswith("I;16") or 255 < top <= 65535:
        scale = 255 / 65535
    elif mode == "F" and top <= 1.0:
        scale = 255.0  # a float image in [0, 1]
    elif top <= 255:
        scale = 1.0  # already in 8-bit range
    else:
        scale = 255 / top
    return np.round(pixels * scale).clip(0, 255).astype(np.uint8)
