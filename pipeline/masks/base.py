"""The segmenter interface: an RGB image in, a boolean foreground mask out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class MaskRequest:
    """One image to segment: its dataset root, path relative to it, and class name."""

    root: str
    impath: str
    classname: str
    dataset: str = ""

    @property
    def path(self) -> Path:
        return Path(self.root) / self.impath


class MissingMaskError(FileNotFoundError):
    """A precomputed mask file is not where the layout says it is."""


class StretchedMaskWarning(UserWarning):
    """A mask had another aspect ratio than its image and was stretched to fit it (counted in the quality report)."""


def same_aspect(mask_hw: tuple[int, int], image_hw: tuple[int, int]) -> bool:
    """Whether a mask is its image scaled uniformly, allowing a pixel of rounding and 1 %."""
    (mh, mw), (h, w) = mask_hw, image_hw
    expected_height = mw * h / w
    return abs(mh - expected_height) <= 1 + 0.01 * mh


class Segmenter:
    name = "base"
    # False for a model on one device: worker processes would each load a copy of it.
    parallel = True

    def segment(self, image: np.ndarray, request: MaskRequest) -> np.ndarray:
        """`image` is uint8 [H, W, 3]; returns bool [H, W]."""
        raise NotImplementedError
