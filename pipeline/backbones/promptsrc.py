"""PromptSRC (Khattak et al., ICCV 2023): independent deep prompts in both encoders (the IVLP design), kept
close to frozen CLIP by self-regulating losses, and a Gaussian-weighted average of the prompts over epochs.

Text branch: CoOp's context at the input ("a photo of a" by default), and at each of the next
`depth_text - 1` blocks the context tokens' hidden states replaced by that block's own learned vectors.
Vision branch: `n_ctx_vision` learned tokens appended after the patch tokens (after the positional
embedding, before ln_pre, with no position of their own), replaced at each of the next `depth_vision - 1`
blocks likewise; the class token is pooled as in CLIP. Both forwards follow open_clip's own steps
(`_text.encode_embeddings`, `VisionTransformer._embeds` / `_pool`) with the insertion added, so with no
prompts they are open_clip's encoders (the text tower on the columns up to the last EOT: equal up to float
rounding; tests/test_promptsrc.py).

Loss, per batch: CE + `text_weight` * L1(prompted class text features, frozen CLIP's template-ensemble text
features) + `image_weight` * L1(prompted image features, frozen CLIP's) + KL(frozen CLIP's logits || prompted
logits) summed over the batch and divided by its number of logits, as the authors' trainer computes them.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..models import ClipModel
from ._text import text_input, text_output
from ._vision import check_vit, patch_tokens
from .coop import CoOp
from .settings import PromptSRCSettings


def ensemble_templates() -> list:
    """The teacher's text templates: CLIP's 80 ImageNet prompt templates, as open_clip ships them."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return list(OPENAI_IMAGENET_TEMPLATES)


def gpa_weights(epochs: int, mean: float, std: float) -> list[float]:
    """Gaussian prompt aggregation's weight of the prompts after each epoch 1..epochs: a normal density at
    `mean` with `std` (in epochs), normalised to sum to 1."""
    density = [math.exp(-0.5 * ((e - mean) / std) ** 2) for e in range(1, epochs + 1)]
    total = sum(density)
    return [d / total for d in density]


class PromptSRC(CoOp):
    name = "promptsrc"
    shares_clip_image_encoder = False
    needs_vit = True
    train_augment = "crop_flip"
    template_variant = "coop"

    Settings = PromptSRCSettings

    def __init__(
        self,
        clip: ClipModel,
        template: str,
        n_ctx: int = 4,
        ctx_init: str = "a photo of a",
        n_ctx_vision: int = 4,
        depth_text: int = 9,
        depth_vision: int = 9,
        text_weight: float = 25.0,
        image_weight: float = 10.0,
        gpa_mean: float = 0.75,
        gpa_std: float = 0.05,
        init_std: float = 0.02,
        epochs: int = 0,
        lr: float = 0.0,
        classnames: Sequence[str] = (),
    ) -> None:
        super().__init__(clip, template, n_ctx=n_ctx, ctx_init=ctx_init, init_std=init_std, classnames=classnames)
        visual = clip.model.visual
        check_vit(visual, "PromptSRC")
        text_layers, vision_layers = len(clip.model.transformer.resblocks), len(visual.transformer.resblocks)
        if not (1 <= depth_text <= text_layers and 1 <= depth_vision <= vision_layers):
            raise ValueError(
                f"backbone.promptsrc: depth_text {depth_text} and depth_vision {depth_vision} must be between 1 and "
                f"the encoders' depths ({text_layers} text, {vision_layers} vision blocks)"
            )
        device = clip.model.token_embedding.weight.device
        text_width, vision_width = self.ctx.shape[-1], visual.class_embedding.shape[-1]
        # As the authors' code: every learned token, at the input and deeper, starts at N(0, 0.02^2) but the
        # text input context, which starts at the words of ctx_init.
        normal = lambda *shape: torch.nn.Parameter(torch.randn(*shape, device=device) * init_std)  # noqa: E731
        self.deep_text = torch.nn.ParameterList([normal(self.n_ctx, text_width) for _ in range(depth_text - 1)])
        self.ctx_vision = normal(n_ctx_vision, vision_width)
        self.deep_vision = torch.nn.ParameterList([normal(n_ctx_vision, vision_width) for _ in range(depth_vision - 1)])
        self.n_ctx_vision = n_ctx_vision
        self.text_weight, self.image_weight = text_weight, image_weight
        self.gpa_mean, self.gpa_std = gpa_mean, gpa_std
        self._teacher_text: dict[tuple[str, ...], torch.Tensor] = {}
        self._gpa: dict[str, torch.Tensor] | None = None

    # --- encoders -----------------------------------------------------------------------------------------
    def class_features(self, classnames: Sequence[str]) -> torch.Tensor:
        emb, tokens = self.prompt_embeddings(classnames)
        model = self.clip_model
        x, attn_mask = text_input(model, emb, tokens)
        x = self._blocks(model.transformer, x, self.deep_text, lambda h, p: _replace(h, 1, p), attn_mask)
        return text_output(model, x, tokens.argmax(dim=-1))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.clip_model.visual
        x = patch_tokens(visual, images)
        if self.n_ctx_vision:
            x = torch.cat([x, self.ctx_vision.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
        x = visual.ln_pre(x)
        n = self.n_ctx_vision
        x = self._blocks(visual.transformer, x, self.deep_vision, lambda h, p: _replace(h, h.shape[1] - n, p), None)
        pooled, _ = visual._pool(x)
        if visual.proj is not None:
            pooled = pooled @ visual.proj
        return F.normalize(pooled.float(), dim=-1)

    def patch_token_positions(self, n_patches: int) -> slice:
        """After the class token, before the vision prompts (appended after the patches)."""
        return slice(1, 1 + n_patches)

    @staticmethod
    def _blocks(transformer, x: torch.Tensor, deep, insert, attn_mask) -> torch.Tensor:
        """The transformer's blocks over x [B, L, W]; before block i >= 1, `insert(x, deep[i - 1])` while
        deep prompts last."""
        if not transformer.batch_first:
            x = x.transpose(0, 1)
        for i, block in enumerate(transformer.resblocks):
            if 1 <= i <= len(deep):
                h = x if transformer.batch_first else x.transpose(0, 1)
                h = insert(h, deep[i - 1].to(h.dtype))
                x = h if transformer.batch_first else h.transpose(0, 1)
            x = block(x, attn_mask=attn_mask)
        return x if transformer.batch_first else x.transpose(0, 1)

    # --- training -----------------------------------------------------------------------------------------
    def _teacher(self, classnames: Sequence[str]) -> torch.Tensor:
        """Frozen CLIP's class features averaged over the template ensemble, then normalised (computed once)."""
        key = tuple(classnames)
        if key not in self._teacher_text:
            names = [c.replace("_", " ") for c in classnames]
            device = self.ctx.device
            with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
                per_template = []
                for template in ensemble_templates():
                    tokens = self.clip.tokenizer([template(n) for n in names]).to(device)
                    per_template.append(self.clip_model.encode_text(tokens).float())
                self._teacher_text[key] = F.normalize(torch.stack(per_template).mean(0), dim=-1)
        return self._teacher_text[key]

    def training_loss(
        self, images: torch.Tensor, labels: torch.Tensor, classnames: Sequence[str]
    ) -> tuple[torch.Tensor, dict]:
        text = self.class_features(classnames)
        image = self.encode_image(images)  # with the graph: the vision prompts learn
        logits = self.logit_scale * image @ text.t()
        ce = F.cross_entropy(logits, labels)
        teacher_text = self._teacher(classnames)
        with torch.no_grad():
            frozen_image = F.normalize(self.clip_model.encode_image(images).float(), dim=-1)
            frozen_logits = self.logit_scale * frozen_image @ teacher_text.t()
        scl_text = F.l1_loss(text, teacher_text) * self.text_weight
        scl_image = F.l1_loss(image, frozen_image) * self.image_weight
        scl_logits = (
            F.kl_div(
                F.log_softmax(logits, dim=1), F.log_softmax(frozen_logits, dim=1), reduction="sum", log_target=True
            )
            / logits.numel()
        )
        loss = ce + scl_text + scl_image + scl_logits
        parts = {"ce": ce, "scl_text": scl_text, "scl_image": scl_image, "scl_logits": scl_logits}
        return loss, {k: float(v.detach()) for k, v in parts.items()}

    def end_epoch(self, epoch: int, epochs: int) -> None:
        """GPA: add this epoch's prompts, weighted by the Gaussian over epochs, to the running average."""
        weight = gpa_weights(epochs, self.gpa_mean * epochs, max(self.gpa_std * epochs, 1e-6))[epoch]
        state = {k: v.detach().clone() * weight for k, v in self.state_dict().items()}
        self._gpa = state if self._gpa is None else {k: self._gpa[k] + state[k] for k in state}

    def end_training(self) -> None:
        """The aggregated prompts replace the last epoch's (the authors' model for inference)."""
        if self._gpa is not None:
            self.load_state_dict(self._gpa)
            self._gpa = None


def _replace(hidden: torch.Tensor, start: int, prompts: torch.Tensor) -> torch.Tensor:
    """hidden [B, L, W] with tokens start .. start + n replaced by `prompts` [n, W] (the same for every row)."""
    n = prompts.shape[0]
    tail = hidden[:, start + n :]
    return torch.cat([hidden[:, :start], prompts.unsqueeze(0).expand(hidden.shape[0], -1, -1), tail], dim=1)
