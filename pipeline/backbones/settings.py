"""Each backbone's `backbone.<name>` params section, as a dataclass, with no torch import.

Kept apart from the backbone classes so that checking a params file (every
stage does it first, `fvgpt check` does only that) stays fast. A backbone's
class points at its settings (`Settings = CoOpSettings`); a test keeps this
table and the registry of classes equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ZeroShotSettings:
    """Zero-shot CLIP has nothing to set."""


@dataclass(frozen=True)
class CoOpSettings:
    n_ctx: int = 4  # context vectors (with ctx_init: the phrase's word count)
    ctx_init: str = ""  # "" = random N(0, init_std^2) init
    init_std: float = 0.02
    class_token_position: Literal["end", "middle", "front"] = "end"
    csc: bool = False  # class-specific context (cannot describe new classes)

    def __post_init__(self) -> None:
        if self.n_ctx < 1 or self.init_std <= 0:
            raise ValueError(f"n_ctx must be >= 1 and init_std > 0, got {self.n_ctx}, {self.init_std}")


@dataclass(frozen=True)
class KgCoOpSettings(CoOpSettings):
    ctx_init: str = "a photo of a"
    weight: float = 2.0  # W in CE + W * (1 - cos); KgCoOp's paper uses 8.0


@dataclass(frozen=True)
class PromptSRCSettings:
    """The authors' base-to-new configuration (ViT-B/16: 12 blocks per encoder)."""

    n_ctx: int = 4  # text context tokens (with ctx_init: the phrase's word count)
    ctx_init: str = "a photo of a"
    n_ctx_vision: int = 4  # vision prompt tokens
    depth_text: int = 9  # blocks with their own text prompts, counting the input (at most the text depth)
    depth_vision: int = 9  # likewise in the image encoder
    text_weight: float = 25.0  # weight of L1(text features, frozen CLIP's template-ensemble features)
    image_weight: float = 10.0  # weight of L1(image features, frozen CLIP's)
    gpa_mean: float = 0.75  # Gaussian prompt aggregation: mean and std as fractions of the epochs
    gpa_std: float = 0.05  # (15 and 1 at the authors' 20 epochs)
    init_std: float = 0.02
    epochs: int = 20  # the backbone's own recipe, over backbone.train
    lr: float = 0.0025

    def __post_init__(self) -> None:
        if min(self.n_ctx, self.n_ctx_vision, self.depth_text, self.depth_vision) < 1:
            raise ValueError("n_ctx, n_ctx_vision, depth_text and depth_vision must be >= 1")
        if self.gpa_std <= 0 or self.init_std <= 0 or self.epochs < 1 or self.lr <= 0:
            raise ValueError("gpa_std, init_std and lr must be > 0 and epochs >= 1")


SETTINGS = {
    "zsclip": ZeroShotSettings,
    "coop": CoOpSettings,
    "kgcoop": KgCoOpSettings,
    "promptsrc": PromptSRCSettings,
}
