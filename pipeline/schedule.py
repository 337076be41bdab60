"""The learning-rate schedule of the authors' Dassl configs."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SGDRecipe:
    """The authors' Dassl optimisation recipe, shared by backbone tuning and the FVG-PT heads."""

    epochs: int = 10
    lr: float = 0.0035
    batch_size: int = 4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5


def epoch_lr(epoch: int, lr: float, epochs: int, warmup_epochs: int = 1, warmup_lr: float = 1e-5) -> float:
    """Constant `warmup_lr` for the warm-up epochs, then cosine over `epochs`, stepped per epoch.

    Dassl's ConstantWarmupScheduler starts its cosine successor only after
    the warm-up, so the first epoch after it runs at the full `lr`.
    """
    if epoch < warmup_epochs:
        return warmup_lr
    return 0.5 * lr * (1 + math.cos(math.pi * (epoch - warmup_epochs) / epochs))
