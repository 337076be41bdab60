"""open_clip's ViT image tower up to its transformer, for backbones that put tokens into it.

Follows open_clip's `VisionTransformer` step by step (patch embedding, class token, positional embedding,
patch dropout), stopping before `ln_pre`, where PromptSRC appends its vision prompts; MMRL applies `ln_pre`
itself and inserts its tokens deeper.
"""

from __future__ import annotations

import torch


def check_vit(visual: torch.nn.Module, backbone: str) -> None:
    if not hasattr(visual, "transformer") or not hasattr(visual, "class_embedding"):
        raise ValueError(
            f"{backbone} needs a ViT image encoder (open_clip VisionTransformer), not {type(visual).__name__}: "
            "set clip.model to a ViT (e.g. ViT-B-16, or fvgpt-tiny-vit on the built-in benchmark)"
        )


def patch_tokens(visual: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """[B, 1 + P, W]: the class token and the patch tokens with their positions, after patch dropout."""
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    return visual.patch_dropout(x)
