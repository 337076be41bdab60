"""Batched, normalised image encoding with the fast settings on GPU."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..device import autocast


def image_encoder(
    encode_image: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    precision: str = "bf16",
    channels_last: bool = True,
    batch_size: int = 256,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap `encode_image` to take any number of images and return L2-normalised float32 features."""

    def encode(x: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in x.split(batch_size):
            chunk = chunk.to(device, non_blocking=True)
            if channels_last and device.type == "cuda":
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                out.append(F.normalize(encode_image(chunk).float(), dim=-1))
        return torch.cat(out)

    return encode
