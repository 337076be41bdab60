"""CoOp (Zhou et al., IJCV 2022): learnable context vectors before, around or after the class name."""

from __future__ import annotations

import warnings
from typing import Sequence

import torch

from ..models import ClipModel
from ._text import check_text_tower, encode_embeddings, token_embeddings
from .base import Backbone
from .settings import CoOpSettings

POSITIONS = ("end", "middle", "front")


class CoOp(Backbone):
    name = "coop"
    train_augment = "resize"

    Settings = CoOpSettings

    def __init__(
        self,
        clip: ClipModel,
        template: str,
        n_ctx: int = 4,
        ctx_init: str = "",
        class_token_position: str = "end",
        csc: bool = False,
        init_std: float = 0.02,
        classnames: Sequence[str] = (),
    ) -> None:
        super().__init__(clip, template, classnames)
        check_text_tower(clip.model)
        if class_token_position not in POSITIONS:
            raise ValueError(f"class_token_position must be one of {POSITIONS}, got {class_token_position!r}")
        self.position = class_token_position
        device = clip.model.token_embedding.weight.device
        width = clip.model.token_embedding.weight.shape[1]
        if ctx_init:
            # As CoOp's code: the context length is the phrase's word count, the first n_ctx token embeddings
            # become the context, the phrase stays in the frozen prompt, and one context serves every class
            # (class-specific context applies to random init only).
            ctx_init = ctx_init.replace("_", " ")
            n_ctx = len(ctx_init.split(" "))
            tokens = clip.tokenizer([ctx_init]).to(device)
            with torch.no_grad():
                init = token_embeddings(clip.model, tokens)[0, 1 : 1 + n_ctx].float()
            if csc:
                warnings.warn(
                    "backbone.coop.csc is ignored when ctx_init is set (one context for all classes, as CoOp)"
                )
                csc = False
            self.prompt_prefix = ctx_init
        else:
            init = torch.randn(n_ctx, width, device=device) * init_std
            self.prompt_prefix = " ".join(["X"] * n_ctx)
        self.n_ctx = n_ctx
        self.csc_classes = list(classnames) if csc else []
        if csc:
            if not classnames:
                raise ValueError("class-specific context (csc) needs the training class names")
            init = torch.randn(len(classnames), n_ctx, width, device=device) * init_std
        self.ctx = torch.nn.Parameter(init)
        self._prompt_cache: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor, list[int]]] = {}

    def _frozen_prompts(self, classnames: tuple[str, ...]):
        """Tokens and frozen embeddings of "X X .. X <name>." per class (cached)."""
        if classnames not in self._prompt_cache:
            names = [c.replace("_", " ") for c in classnames]
            device = self.ctx.device
            tokens = self.clip.tokenizer([f"{self.prompt_prefix} {n}." for n in names]).to(device)
            name_lens = ((self.clip.tokenizer(names) != 0).sum(1) - 2).tolist()  # without SOS and EOT
            with torch.no_grad():
                emb = token_embeddings(self.clip_model, tokens)
            self._prompt_cache[classnames] = (tokens, emb, name_lens)
        return self._prompt_cache[classnames]

    def _context(self, classnames: tuple[str, ...]) -> torch.Tensor:
        if not self.csc_classes:
            return self.ctx.unsqueeze(0).expand(len(classnames), -1, -1)
        unknown = [c for c in classnames if c not in self.csc_classes]
        if unknown:
            raise ValueError(
                f"class-specific context has no vectors for unseen classes {unknown[:3]}; "
                "use csc: false for base-to-new"
            )
        return self.ctx[[self.csc_classes.index(c) for c in classnames]]

    def prompt_embeddings(self, classnames: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        classnames = tuple(classnames)
        tokens, emb, name_lens = self._frozen_prompts(classnames)
        ctx = self._context(classnames).to(emb.dtype)
        n = self.n_ctx
        sos, rest = emb[:, :1], emb[:, 1 + n :]
        if self.position == "end":
            return torch.cat([sos, ctx, rest], 1), tokens
        rows = []
        for i, k in enumerate(name_lens):
            name, tail = rest[i : i + 1, :k], rest[i : i + 1, k:]
            if self.position == "front":
                rows.append(torch.cat([sos[i : i + 1], name, ctx[i : i + 1], tail], 1))
            else:
                h = n // 2
                rows.append(torch.cat([sos[i : i + 1], ctx[i : i + 1, :h], name, ctx[i : i + 1, h:], tail], 1))
        return torch.cat(rows, 0), tokens

    def class_features(self, classnames: Sequence[str]) -> torch.Tensor:
        emb, tokens = self.prompt_embeddings(classnames)
        return encode_embeddings(self.clip_model, emb, tokens)
