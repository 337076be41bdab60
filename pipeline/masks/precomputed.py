"""Mask files on disk, one per image, in the layout the FVG-PT authors publish.

Authors' layout: `<dataset root>/mask/<image path inside the image folder>`,
same file name and extension, foreground where the pixel value exceeds the
threshold. Other releases (DAPT's per-dataset masks among them) differ in
the folder, whether the image sub-folder is kept, and the extension; each
is a parameter here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .base import MaskRequest, MissingMaskError, Segmenter, StretchedMaskWarning, same_aspect


class Precomputed(Segmenter):
    name = "precomputed"

    def __init__(self, mask_dir: str = "mask", image_dir: str = "", strip_image_dir: bool = True,
                 extension: str = "", threshold: int = 0, **_: object) -> None:
        self.mask_dir, self.image_dir = mask_dir, image_dir.strip("/")
        self.strip_image_dir, self.extension, self.threshold = strip_image_dir, extension, threshold

    def mask_path(self, request: MaskRequest) -> Path:
        rel = request.impath
        if self.strip_image_dir and self.image_dir and rel.startswith(self.image_dir + "/"):
            rel = rel[len(self.image_dir) + 1:]
        path = Path(self.mask_dir) / rel
        if not path.is_absolute():
            path = Path(request.root) / path
        return path.with_suffix(self.extension) if self.extension else path

    def segment(self, image: np.ndarray, request: MaskRequest) -> np.ndarray:
        path = self.mask_path(request)
        if not path.is_file():
            raise MissingMaskError(str(path))
        with Image.open(path) as im:
            mask = np.asarray(im.convert("L")) > self.threshold
        h, w = image.shape[:2]
        if mask.shape != (h, w):
            if not same_aspect(mask.shape, (h, w)):
                warnings.warn(StretchedMaskWarning(f"{path}: {mask.shape[1]}x{mask.shape[0]} mask stretched to its {w}x{h} image"))
            mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))
        return mask


class GroundTruth(Precomputed):
    """The synthetic benchmark's exact masks (written by `prepare`)."""

    name = "groundtruth"

    def __init__(self, **_: object) -> None:
        super().__init__(mask_dir="mask", image_dir="images", strip_image_dir=True, threshold=127)

    def segment(self, image: np.ndarray, request: MaskRequest) -> np.ndarray:
        if request.dataset and request.dataset != "synthetic":
            raise ValueError(f"groundtruth masks exist only for the synthetic benchmark, not {request.dataset}; "
                             "use precomputed, grabcut or seem")
        return super().segment(image, request)
