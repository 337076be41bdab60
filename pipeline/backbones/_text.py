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
    pool = getattr(model, "text_pool_type", "argmax")
    if pool != "argmax" or model.text_projection is None:
        raise TypeError(
            f"{type(model).__name__}'s text tower pools by {pool!r}"
            f"{'' if model.text_projection is not None else ' without a projection'}: prompt backbones read CLIP's "
            "EOT token (the largest token id) and project it, as OpenAI's CLIP text tower does"
        )


def token_embeddings(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    return model.token_embedding(tokens)


def trimmed_length(model: torch.nn.Module, tokens: torch.Tensor) -> int:
    """The columns of `tokens` [C, L] a causal, EOT-pooled text tower needs: up to the last EOT.

    Under the causal mask no token after a prompt's EOT reaches that EOT, so the padding columns (CLIP pads
    every prompt to its context length, 77) can be dropped: the features stay equal up to float rounding,
    and the text tower, which prompt tuning runs over every class at every step, does a fraction of the
    work. A tower without a causal mask keeps every column (the EOT pooling is `check_text_tower`'s to ensure).
    """
    if getattr(model, "attn_mask", None) is None:
        return tokens.shape[1]
    return int(tokens.argmax(dim=-1).max()) + 1  # CLIP's EOT has the largest token id


def text_input(
    model: torch.nn.Module, x: torch.Tensor, tokens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token embeddings `x` [C, L, W] with positions added, and the causal mask, both cut to
    `trimmed_length` columns: what enters the text transformer's first block."""
    n = trimmed_length(model, tokens)
    cast_dtype = model.transformer.get_cast_dtype()
    x = x[:, :n].to(cast_dtype) + model.positional_embedding[:n].to(cast_dtype)
    attn_mask = model.attn_mask[:n, :n] if model.attn_mask is not None else None
    return x, attn_mask


def encode_embeddings(model: torch.nn.Module, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """L2-normalised text features from token embeddings `x` [C, L, W]; `tokens` locate the EOT."""
    x, attn_mask = text_input(model, x, tokens)
    return text_output(model, model.transformer(x, attn_mask=attn_mask), tokens.argmax(dim=-1))


def text_output(model: torch.nn.Module, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
    """L2-normalised text features from the last block's output x [C, L, W]: ln_final, the token at index
    eot [C] of each prompt, the projection."""
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot]
    proj = model.text_projection
    x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return F.normalize(x.float(), dim=-1)
