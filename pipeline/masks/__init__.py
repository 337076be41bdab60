"""Segmenters: `create_segmenter(name, **cfg)` is the only entry point; all write the same mask store."""

from __future__ import annotations

from .base import MaskRequest, MissingMaskError, Segmenter
from .center import CenterBox
from .grabcut import GrabCut
from .precomputed import GroundTruth, Precomputed

SEGMENTERS = {"center": CenterBox, "grabcut": GrabCut, "precomputed": Precomputed, "groundtruth": GroundTruth}
SEGMENTER_NAMES = (*SEGMENTERS, "seem")  # SEEM's adapter imports SEEM's code only when built


def create_segmenter(name: str, **cfg) -> Segmenter:
    if name == "seem":
        from .seem import Seem  # imports SEEM's own code only when asked for

        return Seem(**cfg)
    if name not in SEGMENTERS:
        raise KeyError(f"unknown segmenter {name!r}; known: {', '.join([*SEGMENTERS, 'seem'])}")
    return SEGMENTERS[name](**cfg)


__all__ = ["MaskRequest", "MissingMaskError", "Segmenter", "SEGMENTERS", "SEGMENTER_NAMES", "create_segmenter"]
