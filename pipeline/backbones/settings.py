"""Each backbone's `backbone.<name>` params section, as a dataclass, with no torch import.

Kept apart from the backbone classes so that checking a params file (every
stage does it first, `fvgpt check` does only that) stays fast. A backbone's
class points at its settings (`Settings = CoOpSettings`); a test keeps this
table and the registry of classes equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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


# The authors' regularisation weight per dataset (their trainer's table; ImageNet 0.5, and 0.2 when tuning on it
# for cross-dataset transfer, which configs/paper_cross_dataset.yaml sets).
MMRL_REG_WEIGHTS = {
    "stanford_cars": 7.0,
    "fgvc_aircraft": 6.0,
    "sun397": 6.0,
    "dtd": 6.0,
    "food101": 5.0,
    "oxford_flowers": 4.0,
    "ucf101": 3.0,
    "imagenet": 0.5,
    "caltech101": 0.5,
    "oxford_pets": 0.2,
    "eurosat": 0.01,
}


@dataclass(frozen=True)
class MMRLSettings:
    """The authors' base-to-new configuration (ViT-B/16: 12 blocks per encoder)."""

    n_rep_tokens: int = 5  # representation tokens K
    rep_dim: int = 512  # width of the shared representation space (the authors: 2048 on EuroSAT)
    rep_layers_from: int = 6  # first block (1-based) that receives the tokens, through the last (6-12 of 12)
    alpha: float = 0.7  # base-class logits: alpha * class-token logits + (1 - alpha) * representation logits
    reg_weight: float = 1.0  # weight of the cosine regularisers to frozen CLIP, where reg_weights has no entry
    reg_weights: dict[str, float] = field(default_factory=lambda: dict(MMRL_REG_WEIGHTS))  # per dataset
    epochs: int = 10  # the backbone's own recipe, over backbone.train (AdamW)
    lr: float = 0.001

    def __post_init__(self) -> None:
        if min(self.n_rep_tokens, self.rep_dim, self.rep_layers_from, self.epochs) < 1:
            raise ValueError("n_rep_tokens, rep_dim, rep_layers_from and epochs must be >= 1")
        if not 0 <= self.alpha <= 1 or self.lr <= 0 or min([self.reg_weight, *self.reg_weights.values()]) < 0:
            raise ValueError("alpha must be in [0, 1], lr > 0 and every regularisation weight >= 0")
        from ..config_reader import check_keys
        from ..datasets import DATASETS, is_known

        check_keys(
            {k: v for k, v in self.reg_weights.items() if not is_known(k)}, DATASETS, "backbone.mmrl.reg_weights"
        )

    def for_dataset(self, dataset: str) -> "MMRLSettings":
        """The settings one tuning run uses: `reg_weights[dataset]` (else `reg_weight`) as its weight."""
        return replace(self, reg_weight=self.reg_weights.get(dataset, self.reg_weight), reg_weights={})


SETTINGS = {
    "zsclip": ZeroShotSettings,
    "coop": CoOpSettings,
    "kgcoop": KgCoOpSettings,
    "promptsrc": PromptSRCSettings,
    "mmrl": MMRLSettings,
}
