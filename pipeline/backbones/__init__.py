"""Prompt backbones: `create_backbone(name, clip, template, **cfg)` is the only entry point.

PromptSRC and MMRL (deep prompts inside both encoders) register here the
same way; they set `shares_clip_image_encoder = False` and override
`encode_image`, and every stage after them works unchanged.
"""

from __future__ import annotations

from ..models import ClipModel
from .base import Backbone, template_features
from .coop import CoOp
from .kgcoop import KgCoOp
from .zsclip import ZeroShotCLIP

BACKBONES: dict[str, type[Backbone]] = {cls.name: cls for cls in (ZeroShotCLIP, CoOp, KgCoOp)}


def create_backbone(name: str, clip: ClipModel, template: str, **cfg) -> Backbone:
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    cls = BACKBONES[name]
    return cls(clip, template) if cls is ZeroShotCLIP else cls(clip, template, **cfg)


__all__ = ["BACKBONES", "Backbone", "create_backbone", "template_features"]
