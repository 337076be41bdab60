"""What every prompt backbone gives the pipeline."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..models import ClipModel
from .settings import ZeroShotSettings


class Backbone(torch.nn.Module):
    """A (possibly prompt-tuned) CLIP classifier.

    Gives L2-normalised image features, class text features for any list of
    class names, the logit scale, and the training objective on labelled
    images. Backbones whose image path is CLIP's own (zero-shot, CoOp,
    KgCoOp) say so with `shares_clip_image_encoder`: the features stage then
    encodes each image view once for all of them. Deep-prompt backbones
    (PromptSRC, MMRL) set it False and override `encode_image`.
    """

    name = "base"
    shares_clip_image_encoder = True
    needs_vit = False  # prompts inside the image encoder's transformer: a ViT CLIP only
    needs_training = True
    # Train-time augmentation (pipeline.transforms.train_transform): "resize" (Dassl's center_crop list, a squash)
    # or "crop_flip" (RandomResizedCrop + flip).
    train_augment = "resize"
    train_crop_scale = (0.08, 1.0)  # RandomResizedCrop's scale range with crop_flip
    optimizer = "sgd"  # sgd (momentum, the Dassl recipe) | adamw (recipe's lr and weight decay)
    # Image features per image the features stage stores: 1, or 2 for a backbone with a second image feature on
    # base classes (MMRL: class token and representation tokens, `encode_image_for_features`, mixed by
    # `rep_weight`).
    image_feature_blocks = 1
    rep_weight = 0.0
    # Which hand-written template table its prompts and prior use (pipeline.datasets.templates).
    template_variant = "coop"

    # The backbone's `backbone.<name>` params section (pipeline/backbones/settings.py); the constructor takes
    # these fields.
    Settings = ZeroShotSettings

    def __init__(self, clip: ClipModel, template: str, classnames: Sequence[str] = ()) -> None:
        super().__init__()
        self.clip = clip
        self.template = template

    @property
    def clip_model(self) -> torch.nn.Module:
        # ClipModel is not a Module, so state_dict() holds only what is learned.
        return self.clip.model

    @property
    def logit_scale(self) -> float:
        return self.clip.logit_scale

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip_model.encode_image(images).float(), dim=-1)

    def encode_image_for_features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, image_feature_blocks x D]: what the features stage stores per view (one feature by default)."""
        return self.encode_image(images)

    def patch_token_positions(self, n_patches: int) -> slice:
        """Where a ViT's `n_patches` patch tokens sit among the tokens its blocks see (Grad-CAM reads them):
        CLIP's layout, the class token then the patches, so the last n (tokens a backbone puts in front of the
        patches, as MMRL does, change nothing)."""
        return slice(-n_patches, None)

    def class_features(self, classnames: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def loss(
        self, image_features: torch.Tensor, labels: torch.Tensor, classnames: Sequence[str]
    ) -> tuple[torch.Tensor, dict]:
        text = self.class_features(classnames)
        logits = self.logit_scale * image_features @ text.t()
        ce = F.cross_entropy(logits, labels)
        return ce, {"ce": float(ce.detach())}

    def training_loss(
        self, images: torch.Tensor, labels: torch.Tensor, classnames: Sequence[str]
    ) -> tuple[torch.Tensor, dict]:
        """The objective on a batch of images. Backbones that learn only on the text side encode the images
        without a graph; one with learned image prompts (PromptSRC) overrides this."""
        with torch.no_grad():
            feats = self.encode_image(images)
        return self.loss(feats, labels, classnames)

    def end_epoch(self, epoch: int, epochs: int) -> None:
        """Called after each epoch (0-based `epoch` of `epochs`), e.g. to average prompts over epochs."""

    def end_training(self) -> None:
        """Called once after the last epoch, before the learned state is saved."""

    def learnable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.state_dict().items()}

    def load_learnable_state(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state)


@torch.no_grad()
def template_features(clip: ClipModel, template: str, classnames: Sequence[str], device=None) -> torch.Tensor:
    """Zero-shot class features: the hand-written template filled with each class name.

    Always fp32, also when called inside a training autocast region: they are fixed targets (KgCoOp's
    knowledge-guided loss, the CLIP prior), computed once.
    """
    device = torch.device(device or next(clip.model.parameters()).device)
    tokens = clip.tokenizer([template.format(c.replace("_", " ")) for c in classnames]).to(device)
    with torch.autocast(device_type=device.type, enabled=False):
        return F.normalize(clip.model.encode_text(tokens).float(), dim=-1)
