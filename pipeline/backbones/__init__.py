"""Prompt backbones: `create_backbone(name, clip, template, **settings)` is the only entry point.

A backbone is one file (its class) plus its registration (`registry.py`) and
its settings dataclass (`settings.py`, kept free of torch so that checking a
params file is fast). PromptSRC and MMRL (deep prompts inside both encoders)
register the same way; they set `shares_clip_image_encoder = False` and
override `encode_image`, and every stage after them works unchanged.

The package imports the torch-heavy classes only when one of them is asked
for, so `pipeline.backbones.settings` can be read on its own.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "BACKBONES": "registry",
    "create_backbone": "registry",
    "backbone_template": "registry",
    "Backbone": "base",
    "template_features": "base",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["backbone_template", "BACKBONES", "Backbone", "create_backbone", "template_features"]
