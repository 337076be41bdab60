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


SETTINGS = {"zsclip": ZeroShotSettings, "coop": CoOpSettings, "kgcoop": KgCoOpSettings}
