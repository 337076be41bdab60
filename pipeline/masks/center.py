"""A centred box: the prior that any real segmenter has to beat."""

from __future__ import annotations

import numpy as np

from .base import MaskRequest, Segmenter


class CenterBox(Segmenter):
    name = "center"

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def segment(self, image: np.ndarray, request: MaskRequest) -> np.ndarray:
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        bh, bw = max(1, round(h * self.fraction)), max(1, round(w * self.fraction))
        top, left = (h - bh) // 2, (w - bw) // 2
        mask[top : top + bh, left : left + bw] = True
        return mask
