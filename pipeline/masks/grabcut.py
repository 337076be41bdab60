"""OpenCV GrabCut from a centred rectangle: no weights, the offline default for photos."""

from __future__ import annotations

import cv2
import numpy as np

from .base import MaskRequest, Segmenter


class GrabCut(Segmenter):
    name = "grabcut"

    def __init__(self, margin: float, iterations: int, max_side: int) -> None:
        self.margin, self.iterations, self.max_side = margin, iterations, max_side

    def segment(self, image: np.ndarray, request: MaskRequest) -> np.ndarray:
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))  # GrabCut is quadratic-ish in pixels; segment small, upsample
        small = (
            cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
            if scale < 1
            else image
        )
        sh, sw = small.shape[:2]
        mx, my = max(1, int(sw * self.margin)), max(1, int(sh * self.margin))
        rect = (mx, my, max(1, sw - 2 * mx), max(1, sh - 2 * my))
        mask = np.zeros((sh, sw), np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's GMM init is random; fix it so masks are repeatable
        try:
            cv2.grabCut(
                np.ascontiguousarray(small[..., ::-1]), mask, rect, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_RECT
            )
        except cv2.error:
            # Degenerate images (flat colour, tiny) have no two colour models: fall back to the rectangle.
            mask[rect[1] : rect[1] + rect[3], rect[0] : rect[0] + rect[2]] = cv2.GC_PR_FGD
        fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        if scale < 1:
            fg = cv2.resize(fg.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        return fg
