"""A centred box: the prior that any real segmenter has to beat."""

from __future__ import annotations

import numpy as np

from .base import MaskRequest, Segmenter


class CenterBox(Segmenter):
    name = "center"

    def __init__(self, fraction: float = 0.6) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"masks.center.fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def segment(self, image: np.ndarray, request: MaskRequest) -> np.ndarray:
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        bh, bw = max(1, round(h * self.fraction)), max(1, round(w * self.fraction))
        top, left = (h - bh) // 2, (w - bw) // 2
        mask[top:top + bh, left:left + bw] = True
        return mask
