"""Zero-shot CLIP with the dataset's hand-written template."""

from __future__ import annotations

from typing import Sequence

import torch

from .base import Backbone, template_features


class ZeroShotCLIP(Backbone):
    name = "zsclip"
    needs_training = False

    def class_features(self, classnames: Sequence[str]) -> torch.Tensor:
        return template_features(self.clip, self.template, classnames)
