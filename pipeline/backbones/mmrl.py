"""MMRL (Guo et al., CVPR 2025): a shared learnable representation space projected into the deeper blocks of
both encoders, a fixed hand-written prompt at the text input, and two image features per image.

Representation space: `n_rep_tokens` learned vectors of width `rep_dim`. Before each block from
`rep_layers_from` (1-based, as the authors count: 6 of ViT-B/16's 12) to the last, one linear map per block
and modality projects the same space to that encoder's width, and the projected tokens go in right after the
first token: inserted at the first such block, then replacing the previous block's outputs at their
positions. They have no positional embedding. The text encoder's causal mask grows with them, so the text
tokens see them and the EOT token is found K positions later.

Image features: the class token, pooled as CLIP pools it (`proj`, frozen), and the representation tokens'
mean after `ln_post`, through a new learned projection `proj_rep`. Logits: on base classes
`alpha * z_cls + (1 - alpha) * z_rep`, on new classes `z_cls` alone (both from the same forward, with the
representation tokens present). For FVG-PT the features stage stores both image features, and the heads run
each branch on its own (pipeline/features/run_features.py: `rep_weight`).

Loss: `alpha * CE(z_cls) + (1 - alpha) * CE(z_rep) + reg_weight * ((1 - cos(f_cls, frozen CLIP's f)) +
(1 - cos(class features, frozen CLIP's class features of the same template)))`, cosines averaged over the
batch and the classes, as the authors' trainer computes it.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F

from ..models import ClipModel
from ._text import check_text_tower, text_input, text_output
from ._vision import check_vit, patch_tokens
from .base import Backbone, template_features
from .settings import MMRLSettings


class MMRL(Backbone):
    name = "mmrl"
    shares_clip_image_encoder = False
    needs_vit = True
    train_augment = "crop_flip"
    train_crop_scale = (0.5, 1.0)  # the authors' RandomResizedCrop scale
    optimizer = "adamw"
    image_feature_blocks = 2  # class-token and representation features (encode_image_for_features)
    template_variant = "coop"  # the authors' per-dataset templates are CoOp's

    Settings = MMRLSettings

    def __init__(
        self,
        clip: ClipModel,
        template: str,
        n_rep_tokens: int = 5,
        rep_dim: int = 512,
        rep_layers_from: int = 6,
        alpha: float = 0.7,
        reg_weight: float = 1.0,
        reg_weights: dict | None = None,  # the per-dataset table, applied to reg_weight before (for_dataset)
        epochs: int = 0,
        lr: float = 0.0,
        classnames: Sequence[str] = (),
    ) -> None:
        super().__init__(clip, template, classnames)
        model = clip.model
        check_text_tower(model)
        visual = model.visual
        check_vit(visual, "MMRL")
        text_depth, vision_depth = len(model.transformer.resblocks), len(visual.transformer.resblocks)
        depth = min(text_depth, vision_depth)
        if not 1 <= rep_layers_from <= depth:
            raise ValueError(
                f"backbone.mmrl.rep_layers_from {rep_layers_from} must be between 1 and the encoders' depth {depth}"
            )
        device = model.token_embedding.weight.device
        text_width, vision_width = model.token_embedding.weight.shape[1], visual.class_embedding.shape[-1]
        self.first = rep_layers_from - 1  # 0-based index of the first block with representation tokens
        self.rep = torch.nn.Parameter(torch.randn(n_rep_tokens, rep_dim, device=device) * 0.02)
        # As the authors: one map per block, every copy starting from the same initial weights.
        to_text, to_vision = torch.nn.Linear(rep_dim, text_width), torch.nn.Linear(rep_dim, vision_width)
        self.to_text = torch.nn.ModuleList([copy.deepcopy(to_text) for _ in range(text_depth - self.first)]).to(device)
        self.to_vision = torch.nn.ModuleList([copy.deepcopy(to_vision) for _ in range(vision_depth - self.first)]).to(
            device
        )
        out_dim = visual.proj.shape[1] if visual.proj is not None else vision_width
        # A new projection for the representation feature, not a copy of CLIP's (the authors' choice).
        self.proj_rep = torch.nn.Parameter(torch.randn(vision_width, out_dim, device=device) * vision_width**-0.5)
        self.n_rep = n_rep_tokens
        self.alpha, self.reg_weight = alpha, reg_weight
        self._prompts: dict[tuple[str, ...], torch.Tensor] = {}
        self._frozen_text: dict[tuple[str, ...], torch.Tensor] = {}

    @property
    def rep_weight(self) -> float:
        """The representation feature's share of the base-class logits (1 - alpha)."""
        return 1 - self.alpha

    # --- encoders -----------------------------------------------------------------------------------------
    def _through(self, transformer, x: torch.Tensor, maps: torch.nn.ModuleList, attn_mask=None) -> torch.Tensor:
        """The blocks over x [B, L, W]; before block `first + i`, the representation tokens projected by
        maps[i] inserted after the first token (i = 0) or replacing it (i > 0). For the text encoder
        (`attn_mask` given) the causal mask grows with the tokens."""
        if not transformer.batch_first:
            x = x.transpose(0, 1)
        for i, block in enumerate(transformer.resblocks):
            if i >= self.first:
                h = x if transformer.batch_first else x.transpose(0, 1)
                tokens = maps[i - self.first](self.rep).to(h.dtype).unsqueeze(0).expand(h.shape[0], -1, -1)
                keep = h[:, 1:] if i == self.first else h[:, 1 + self.n_rep :]
                h = torch.cat([h[:, :1], tokens, keep], dim=1)
                x = h if transformer.batch_first else h.transpose(0, 1)
                if attn_mask is not None and i == self.first:
                    attn_mask = _causal_mask(h.shape[1], attn_mask)
            x = block(x, attn_mask=attn_mask)
        return x if transformer.batch_first else x.transpose(0, 1)

    def _prompt_tokens(self, classnames: tuple[str, ...]) -> torch.Tensor:
        if classnames not in self._prompts:
            text = [self.template.format(c.replace("_", " ")) for c in classnames]
            self._prompts[classnames] = self.clip.tokenizer(text).to(self.rep.device)
        return self._prompts[classnames]

    def class_features(self, classnames: Sequence[str]) -> torch.Tensor:
        model = self.clip_model
        tokens = self._prompt_tokens(tuple(classnames))
        x, attn_mask = text_input(model, model.token_embedding(tokens), tokens)
        x = self._through(model.transformer, x, self.to_text, attn_mask)
        return text_output(model, x, tokens.argmax(dim=-1) + self.n_rep)  # the representation tokens precede the EOT

    def image_branches(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class-token features, representation features), each L2-normalised [B, D], from one forward."""
        visual = self.clip_model.visual
        x = visual.ln_pre(patch_tokens(visual, images))
        x = self._through(visual.transformer, x, self.to_vision)
        # the class token pooled by CLIP's own path, on the sequence without the representation tokens
        pooled, _ = visual._pool(torch.cat([x[:, :1], x[:, 1 + self.n_rep :]], dim=1))
        if visual.proj is not None:
            pooled = pooled @ visual.proj
        rep = visual.ln_post(x[:, 1 : 1 + self.n_rep]).mean(dim=1) @ self.proj_rep.to(x.dtype)
        return F.normalize(pooled.float(), dim=-1), F.normalize(rep.float(), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """The class-token features: MMRL's image features on new classes."""
        return self.image_branches(images)[0]

    def encode_image_for_features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 2 D]: the class-token and the representation features side by side, for the features stage."""
        return torch.cat(self.image_branches(images), dim=-1)

    # --- training -----------------------------------------------------------------------------------------
    def _frozen_class_features(self, classnames: Sequence[str]) -> torch.Tensor:
        key = tuple(classnames)
        if key not in self._frozen_text:
            self._frozen_text[key] = template_features(self.clip, self.template, classnames, self.rep.device)
        return self._frozen_text[key]

    def training_loss(
        self, images: torch.Tensor, labels: torch.Tensor, classnames: Sequence[str]
    ) -> tuple[torch.Tensor, dict]:
        text = self.class_features(classnames)
        f_cls, f_rep = self.image_branches(images)
        s = self.logit_scale
        with torch.autocast(device_type=images.device.type, enabled=False):  # logits at 100x: not in bf16
            ce_cls = F.cross_entropy(s * f_cls @ text.t(), labels)
            ce_rep = F.cross_entropy(s * f_rep @ text.t(), labels)
        with torch.no_grad():
            frozen_image = F.normalize(self.clip_model.encode_image(images).float(), dim=-1)
        reg_image = 1 - F.cosine_similarity(f_cls, frozen_image, dim=-1).mean()
        reg_text = 1 - F.cosine_similarity(text, self._frozen_class_features(classnames), dim=-1).mean()
        loss = self.alpha * ce_cls + (1 - self.alpha) * ce_rep + self.reg_weight * (reg_image + reg_text)
        parts = {"ce_cls": ce_cls, "ce_rep": ce_rep, "reg_image": reg_image, "reg_text": reg_text}
        return loss, {k: float(v.detach()) for k, v in parts.items()}


def _causal_mask(length: int, like: torch.Tensor) -> torch.Tensor:
    """open_clip's causal mask (-inf above the diagonal) for `length` tokens, in `like`'s dtype and device."""
    mask = torch.full((length, length), float("-inf"), dtype=like.dtype, device=like.device)
    return mask.triu_(1)
