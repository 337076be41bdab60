"""Mask files on disk, one per image, in the layout the FVG-PT authors publish.

Authors' layout: `<dataset root>/mask/<image path inside the image folder>`,
same file name and extension, foreground where the pixel value exceeds half
the file's range (127 for 8-bit files, 0.5 for float ones), as the authors
binarise. Other releases (DAPT's per-dataset masks among them) differ in
the folder, whether the image sub-folder is kept, and the extension; each
is a parameter here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..datasets.synthetic import is_synthetic
from .base import MaskRequest, MissingMaskError, Segmenter, StretchedMaskWarning, same_aspect

# Half the value range of each PIL mode a mask file may have ("auto" threshold).
HALF_RANGE = {
    "1": 0,
    "L": 127,
    "P": 127,
    "LA": 127,
    "RGB": 127,
    "RGBA": 127,
    "CMYK": 127,
    "YCbCr": 127,
    "I;16": 32767,
    "I;16B": 32767,
    "I;16L": 32767,
    "I;16N": 32767,
    "I": 32767,
    "F": 0.5,
}


def binarise(im: Image.Image, threshold: float | str = "auto") -> np.ndarray:
    """Foreground where the mask value exceeds `threshold`; "auto" is half the file's range.

    Single-channel files are compared on their own values (16-bit and float files are not squeezed into 8 bits
    first); colour files on their luminance.
    """
    if threshold == "auto":
        if im.mode not in HALF_RANGE:
            raise ValueError(f"mask mode {im.mode} has no known range: set masks.precomputed.threshold to a number")
        threshold = HALF_RANGE[im.mode]
    if im.mode in ("1", "L", "I", "F") or im.mode.startswith("I;16"):
        values = np.asarray(im)
    else:
        values = np.asarray(im.convert("L"))
    return values.astype(np.float64) > float(threshold)


class Precomputed(Segmenter):
    name = "precomputed"

    def __init__(
        self, mask_dir: str, strip_image_dir: bool, extension: str, threshold: float | str, image_dir: str = ""
    ) -> None:
        if threshold != "auto" and not isinstance(threshold, (int, float)):
            raise ValueError(f"masks.precomputed.threshold must be auto or a number, got {threshold!r}")
        self.mask_dir, self.image_dir = mask_dir, image_dir.strip("/")
        self.strip_image_dir, self.extension, self.threshold = strip_image_dir, extension, threshold

    def mask_path(self, request: MaskRequest) -> Path:
        rel = request.impath
        if self.strip_image_dir and self.image_dir and rel.startswith(self.image_dir + "/"):
            rel = rel[len(self.image_dir) + 1 :]
        path = Path(self.mask_dir) / rel
        if not path.is_absolute():
            path = Path(request.root) / path
        return path.with_suffix(self.extension) if self.extension else path

    def segment(self, image: np.ndarray, request: MaskRequest) -> np.ndarray:
        path = self.mask_path(request)
        if not path.is_file():
            raise MissingMaskError(str(path))
        with Image.open(path) as im:
            mask = binarise(im, self.threshold)
        h, w = image.shape[:2]
        if mask.shape != (h, w):
            if not same_aspect(mask.shape, (h, w)):
                warnings.warn(
                    StretchedMaskWarning(f"{path}: {mask.shape[1]}x{mask.shape[0]} mask stretched to its {w}x{h} image")
                )
            mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))
        return mask


class GroundTruth(Precomputed):
    """The synthetic benchmark's exact masks (written by `prepare`)."""

    name = "groundtruth"

    def __init__(self) -> None:
        super().__init__(mask_dir="mask", strip_image_dir=True, extension="", threshold=127, image_dir="images")

    def segment(self, image: np.ndarray, request: MaskRequest) -> np.ndarray:
        if request.dataset and not is_synthetic(request.dataset):
            raise ValueError(
                f"groundtruth masks exist only for the synthetic benchmark, not {request.dataset}; "
                "use precomputed, grabcut or seem"
            )
        return super().segment(image, request)
