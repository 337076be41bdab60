"""The registry of backbone classes and `create_backbone`, the only way to build one."""

from __future__ import annotations

from dataclasses import asdict
from typing import Sequence

from ..config_reader import build
from ..datasets.templates import template_for
from ..models import ClipModel
from .base import Backbone
from .coop import CoOp
from .kgcoop import KgCoOp
from .mmrl import MMRL
from .promptsrc import PromptSRC
from .zsclip import ZeroShotCLIP

BACKBONES: dict[str, type[Backbone]] = {cls.name: cls for cls in (ZeroShotCLIP, CoOp, KgCoOp, PromptSRC, MMRL)}


def create_backbone(name: str, clip: ClipModel, template: str, classnames: Sequence[str] = (), **settings) -> Backbone:
    """Backbone `name` with its `backbone.<name>` settings, checked against its `Settings` dataclass."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    cls = BACKBONES[name]
    checked = build(cls.Settings, settings, f"backbone.{name}")
    return cls(clip, template, classnames=classnames, **asdict(checked))


def backbone_template(name: str, dataset: str) -> str:
    """The hand-written template a backbone uses on a dataset (its own table variant)."""
    return template_for(dataset, BACKBONES[name].template_variant)
