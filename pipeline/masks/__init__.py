"""Segmenters: `create_segmenter(name, **cfg)` is the only entry point; all write the same mask store."""

from __future__ import annotations

from dataclasses import asdict

from .base import MaskRequest, MissingMaskError, Segmenter
from .center import CenterBox
from .grabcut import GrabCut
from .precomputed import GroundTruth, Precomputed

SEGMENTERS = {"center": CenterBox, "grabcut": GrabCut, "precomputed": Precomputed, "groundtruth": GroundTruth}
SEGMENTER_NAMES = (*SEGMENTERS, "seem")  # SEEM's adapter imports SEEM's code only when built


# Arguments a segmenter gets from the dataset or the runtime rather than from its `masks.<name>` section.
CONTEXT_ARGS = {"precomputed": ("image_dir",), "seem": ("device",)}


def create_segmenter(name: str, **cfg) -> Segmenter:
    """Segmenter `name` with its `masks.<name>` settings, checked (and defaulted) by pipeline.config."""
    from ..config import SEGMENTER_SETTINGS
    from ..config_reader import build

    if name not in SEGMENTER_NAMES:
        raise KeyError(f"unknown segmenter {name!r}; known: {', '.join(SEGMENTER_NAMES)}")
    context = {k: cfg.pop(k) for k in CONTEXT_ARGS.get(name, ()) if k in cfg}
    settings = asdict(build(SEGMENTER_SETTINGS[name], cfg, f"masks.{name}")) if name in SEGMENTER_SETTINGS else {}
    if name == "seem":
        from .seem import Seem  # imports SEEM's own code only when asked for

        return Seem(**settings, **context)
    if cfg and name not in SEGMENTER_SETTINGS:
        raise KeyError(f"masks.{name} takes no settings, got {sorted(cfg)}")
    return SEGMENTERS[name](**settings, **context)


__all__ = ["MaskRequest", "MissingMaskError", "Segmenter", "SEGMENTERS", "SEGMENTER_NAMES", "create_segmenter"]
