"""KgCoOp (Yao et al., CVPR 2023): CoOp kept close to the hand-written prompt's text features."""

from __future__ import annotations

from typing import Sequence

import torch

from ..models import ClipModel
from .base import template_features
from .coop import CoOp
from .settings import KgCoOpSettings


class KgCoOp(CoOp):
    name = "kgcoop"
    train_augment = "crop_flip"
    template_variant = "kgcoop"  # KgCoOp's released trainer uses its own DTD template

    Settings = KgCoOpSettings

    def __init__(
        self, clip: ClipModel, template: str, weight: float = 2.0, ctx_init: str = "a photo of a", **cfg
    ) -> None:
        super().__init__(clip, template, ctx_init=ctx_init, **cfg)
        self.weight = weight
        self._frozen_text: dict[tuple[str, ...], torch.Tensor] = {}

    def loss(
        self, image_features: torch.Tensor, labels: torch.Tensor, classnames: Sequence[str]
    ) -> tuple[torch.Tensor, dict]:
        key = tuple(classnames)
        if key not in self._frozen_text:
            self._frozen_text[key] = template_features(self.clip, self.template, classnames)
        text = self.class_features(classnames)
        logits = self.logit_scale * image_features @ text.t()
        ce = torch.nn.functional.cross_entropy(logits, labels)
        # 1 - cos between each learned class feature and the frozen template feature (both L2-normalised).
        kg = 1.0 - (text * self._frozen_text[key]).sum(-1).mean()
        loss = ce + self.weight * kg
        return loss, {"ce": float(ce.detach()), "kg": float(kg.detach())}
