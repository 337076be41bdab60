"""open_clip's text tower, entered at the token-embedding level.

Prompt learners replace some token embeddings with learned vectors, so
they need `encode_text` split after `token_embedding`. This follows
open_clip's `CLIP.encode_text` step by step (positional embedding, causal
transformer, ln_final, EOT pooling, projection).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_text_tower(model: torch.nn.Module) -> None:
    for attr in ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection"):
        if not hasattr(model, attr):
            raise TypeError(
                f"{type(model).__name__} has no `{attr}`: prompt backbones need open_clip's built-in CLIP text "
                "tower (ViT-*/RN* models), not a Hugging Face text tower"
            )


def token_embeddings(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    return model.token_embedding(tokens)


def encode_embeddings(model: torch.nn.Module, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """L2-normalised text features from token embeddings `x` [C, L, W]; `tokens` locate the EOT."""
    cast_dtype = model.transformer.get_cast_dtype()
    x = x.to(cast_dtype) + model.positional_embedding.to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    proj = model.text_projection
    x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return F.normalize(x.float(), dim=-1)
