"""Where a model looks: Grad-CAM on an image encoder (CLIP's, or a backbone's own) for a class score, and the
share of it inside the foreground mask.

Zero-shot CLIP, a prompt backbone that keeps CLIP's image encoder (CoOp, KgCoOp) and backbone + FVG-PT all
score an image from the same encoder output f; they differ in the function of f that gives a class its logit.
Grad-CAM (Selvaraju et al., 2017) weighs the channels of a spatial layer by the mean gradient of that logit
and keeps the positive part of the weighted sum, so the three maps show how each scoring function reads the
same activations. A backbone with its own image encoder (PromptSRC's prompted ViT, MMRL's) runs CLIP's blocks
with its tokens added, so the same layer is read in its forward. Nothing is trained: gradients flow from the
FVG-PT logit through the heads into the encoder only to be read.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Score = Callable[[torch.Tensor], torch.Tensor]  # image features [B, D] (as the evaluation scores them) -> logits [B, C]


def spatial_layer(visual: torch.nn.Module, layer: str = "last") -> torch.nn.Module:
    """The module whose output Grad-CAM reads: an open_clip ModifiedResNet's last residual stage (`layer4`, or
    the stage named by `layer`, e.g. `layer3` for a finer grid on small images), or, in a VisionTransformer,
    the tokens entering its last block (or block `layer`, an index), after the block's first layer norm.

    Not a ViT block's output: the image feature is the class token after the last block, so the patch tokens
    that block outputs get no gradient and their Grad-CAM is zero everywhere."""
    if hasattr(visual, "layer4"):
        name = "layer4" if layer == "last" else layer
        if not hasattr(visual, name):
            raise ValueError(f"attention.layer {layer!r}: this ResNet has layer1 ... layer4 (or last)")
        return getattr(visual, name)
    if hasattr(visual, "transformer"):
        blocks = visual.transformer.resblocks
        try:
            return blocks[-1 if layer == "last" else int(layer)].ln_1
        except (ValueError, IndexError):
            raise ValueError(f"attention.layer {layer!r}: give a block index of 0 ... {len(blocks) - 1}, or last")
    raise ValueError(f"no Grad-CAM layer known for an image encoder of type {type(visual).__name__}")


def patch_count(visual: torch.nn.Module) -> int:
    """A ViT's number of patch tokens, h*w."""
    grid = visual.grid_size
    return grid[0] * grid[1]


def _as_grid(activation: torch.Tensor, visual: torch.nn.Module, patches: slice | None = None) -> torch.Tensor:
    """[B, C, h, w] from a ResNet stage's output, or from a ViT block's tokens [B, L, C]: the patch tokens are
    at `patches` (by default the last h*w: CLIP's class token, and MMRL's representation tokens, come first)."""
    if activation.dim() == 4:
        return activation
    grid = visual.grid_size
    tokens = activation[:, patches or slice(-patch_count(visual), None)]
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], grid[0], grid[1])


def grad_cam(
    encode_image: Callable[[torch.Tensor], torch.Tensor],
    visual: torch.nn.Module,
    layer: torch.nn.Module,
    images: torch.Tensor,
    scores: dict[str, Score],
    targets: dict[str, torch.Tensor],
    patches: slice | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Grad-CAM maps [B, H, W] in [0, 1] (each image's map divided by its maximum; all zero where no location
    raises the score) at the images' resolution, one per scoring function, for class targets[name] [B] of
    each image; and the image features [B, D] they came from (for the predictions). `encode_image` gives the
    features the scores take (normalised, or MMRL's fused base-class feature); `patches`, where a ViT's patch
    tokens are (`_as_grid`). One encoder forward serves every scoring function."""
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        output = output[0] if isinstance(output, tuple) else output
        if not output.requires_grad:  # a frozen encoder: track from this layer on, nothing before it
            output.requires_grad_(True)
        captured.append(output)

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            f = encode_image(images).float()
            activation = captured[-1]
            maps = {}
            for i, (name, score) in enumerate(scores.items()):
                logit = score(f).gather(1, targets[name].view(-1, 1)).sum()
                # autograd.grad, not backward: no parameter of the encoder or the heads gets a .grad
                (grad,) = torch.autograd.grad(logit, activation, retain_graph=i < len(scores) - 1)
                a, g = _as_grid(activation.detach(), visual, patches), _as_grid(grad, visual, patches)
                cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
                cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
                peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
                maps[name] = (cam / peak).detach()
    finally:
        handle.remove()
    return maps, f.detach()


def foreground_share(cam: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The share of each map's mass inside the foreground mask, [B] in [0, 1] (NaN for an all-zero map). A
    map spread evenly over the image gives the mask's area; one inside the object, 1."""
    mass = cam.flatten(1).sum(1)
    inside = (cam * mask.to(cam.dtype)).flatten(1).sum(1)
    return torch.where(mass > 0, inside / mass.clamp_min(1e-12), torch.full_like(mass, float("nan")))
