"""A convolutional stem in place of a ViT's patch embedding (Xiao et al., "Early Convolutions Help
Transformers See Better", 2021), for the built-in benchmark's tiny ViT.

A ViT whose patches are cut by one strided convolution learns slowly from a few thousand synthetic
images: at the benchmark's pretraining budget the tiny ViT learned colours but not shapes (docs/
benchmarks.md). A few stride-2 3x3 convolutions (batch norm, ReLU) followed by a 1x1 projection give it
the locality a ResNet has, and leave everything after the patch embedding as open_clip builds it: the
stem replaces `visual.conv1` and returns the same [B, width, grid, grid] map, so class token, positions,
transformer, and the backbones that insert tokens (PromptSRC, MMRL) work unchanged.

Which architectures have a stem is declared in `configs/conv_stems.json` ({model name: channels of the
stride-2 convolutions}), next to the open_clip configs it extends; open_clip ignores that file.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import torch
from torch import nn

STEMS_FILE = Path(__file__).parent / "configs" / "conv_stems.json"


class ConvStem(nn.Module):
    """[B, 3, H, W] -> [B, width, H / patch, W / patch]: log2(patch) stride-2 3x3 convolutions, then 1x1."""

    def __init__(self, channels: list[int], width: int, patch_size: int):
        super().__init__()
        if 2 ** len(channels) != patch_size:
            raise ValueError(
                f"a conv stem for patch size {patch_size} needs log2({patch_size}) = {math.log2(patch_size):g} "
                f"stride-2 convolutions, got channels {channels} ({STEMS_FILE.name})"
            )
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, width, 1, bias=False))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@functools.cache
def conv_stems() -> dict[str, list[int]]:
    """{model name: stem channels}, read once per process."""
    return json.loads(STEMS_FILE.read_text()) if STEMS_FILE.is_file() else {}


def install_conv_stem(model: nn.Module, name: str) -> nn.Module:
    """Replace the patch embedding of `name`'s ViT by its declared stem (before weights are loaded); no-op otherwise."""
    channels = conv_stems().get(name)
    if channels is None:
        return model
    visual = model.visual
    if not hasattr(visual, "conv1") or not hasattr(visual, "patch_size"):
        raise ValueError(f"{STEMS_FILE.name} gives {name} a conv stem, but its image encoder is not a ViT")
    patch = visual.patch_size[0] if isinstance(visual.patch_size, (tuple, list)) else visual.patch_size
    visual.conv1 = ConvStem(list(channels), visual.class_embedding.shape[-1], int(patch))
    return model
