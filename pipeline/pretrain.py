"""Contrastive pretraining of a tiny CLIP on synthetic image-caption pairs.

No weights can be downloaded for the built-in benchmark, so its CLIP is
trained here: objects and backgrounds are paired at random (no class
shortcut in pretraining), captions name both, and some colour-shape pairs
are held out entirely so zero-shot accuracy on them measures composition,
not memorisation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .config import PretrainSpec
from .datasets.synthetic import COLOURS, SHAPES, TINTS, background_styles, render

CAPTIONS = (
    "a photo of a {obj}.",
    "a photo of a {obj} on a {bg} background.",
    "a {obj} on {bg}.",
    "a {obj}.",
)


def pretrain_styles() -> list[tuple[str, str]]:
    """The benchmark's textured backgrounds, then one flat background per tint."""
    return background_styles() + [("plain", tint) for tint in TINTS]


def _pairs(held_out: list[list[str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    held = {tuple(p) for p in held_out}
    every = [(c, s) for s in SHAPES for c in COLOURS]
    return [p for p in every if p not in held], [p for p in every if p in held]


def render_pool(pairs, n: int, size: int, rng: np.random.Generator, plain: float = 0.0, progress=None):
    """`n` images of random pairs on random backgrounds (flat with probability `plain`): uint8 [n, 3, s, s],
    pair, style."""
    styles = pretrain_styles()
    n_textured = len(background_styles())
    images = np.empty((n, 3, size, size), np.uint8)
    pair_idx = rng.integers(len(pairs), size=n)
    style_idx = rng.integers(n_textured, size=n)
    flat = rng.random(n) < plain
    style_idx[flat] = n_textured + rng.integers(len(TINTS), size=int(flat.sum()))
    for i in range(n):
        colour, shape = pairs[pair_idx[i]]
        tex, tint = styles[style_idx[i]]
        img, _ = render(shape, colour, tex, tint, size, rng)
        images[i] = img.transpose(2, 0, 1)
        if progress:
            progress(1)
    return images, pair_idx, style_idx


def captions_for(pairs, styles, pair_idx, style_idx, rng: np.random.Generator) -> list[str]:
    out = []
    for p, s in zip(pair_idx, style_idx):
        colour, shape = pairs[p]
        tex, tint = styles[s]
        bg = f"plain {tint}" if tex == "plain" else f"{tint} {tex}"
        out.append(CAPTIONS[rng.integers(len(CAPTIONS))].format(obj=f"{colour} {shape}", bg=bg))
    return out


def normalise(images_u8: torch.Tensor, mean, std) -> torch.Tensor:
    x = images_u8.float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flips and scale-and-shift crops (batched affine grid), so later crops stay in-distribution."""
    n = x.shape[0]
    scale = 0.55 + 0.45 * torch.rand(n, generator=gen)
    shift = (1 - scale).unsqueeze(1) * (2 * torch.rand(n, 2, generator=gen) - 1)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def lr_at(step: int, spec: PretrainSpec) -> float:
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    t = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.lr * 0.5 * (1 + math.cos(math.pi * t))


def train_clip(model, tokenizer, mean, std, spec: PretrainSpec, device="cpu", progress=None, log=print) -> list[float]:
    """Train `model` in place with the symmetric InfoNCE loss; returns the loss per step."""
    rng = np.random.default_rng(spec.seed)
    gen = torch.Generator().manual_seed(spec.seed)
    pairs, _ = _pairs(spec.held_out)
    styles = pretrain_styles()
    images, pair_idx, style_idx = render_pool(pairs, spec.pool_size, spec.image_size, rng, spec.plain_background)
    images = torch.from_numpy(images)
    model.train().requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    losses = []
    for step in range(spec.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, spec)
        idx = torch.randint(len(images), (spec.batch_size,), generator=gen)
        x = augment(normalise(images[idx], mean, std), gen).to(device)
        text = tokenizer(captions_for(pairs, styles, pair_idx[idx.numpy()], style_idx[idx.numpy()], rng)).to(device)
        img_f = F.normalize(model.encode_image(x), dim=-1)
        txt_f = F.normalize(model.encode_text(text), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img_f @ txt_f.t()
        target = torch.arange(len(x), device=device)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        if progress:
            progress(1)
        if log and (step + 1) % max(1, spec.steps // 10) == 0:
            log(
                f"step {step + 1}/{spec.steps}  loss {np.mean(losses[-50:]):.3f}  "
                f"logit scale {model.logit_scale.exp().item():.1f}"
            )
    model.eval().requires_grad_(False)
    return losses


@torch.no_grad()
def zero_shot_accuracy(
    model, tokenizer, mean, std, spec: PretrainSpec, template: str = "a photo of a {}.", device="cpu"
) -> dict:
    """Zero-shot accuracy over all colour-shape classes on fresh renders; also on the held-out pairs only."""
    rng = np.random.default_rng(spec.seed + 1)
    seen, held = _pairs(spec.held_out)
    every = [(c, s) for s in SHAPES for c in COLOURS]
    text = tokenizer([template.format(f"{c} {s}") for c, s in every]).to(device)
    txt_f = F.normalize(model.encode_text(text), dim=-1)
    images, pair_idx, _ = render_pool(every, spec.eval_per_class * len(every), spec.image_size, rng)
    pred = []
    for i in range(0, len(images), 256):
        x = normalise(torch.from_numpy(images[i : i + 256]), mean, std).to(device)
        pred.append((F.normalize(model.encode_image(x), dim=-1) @ txt_f.t()).argmax(-1).cpu())
    correct = torch.cat(pred).numpy() == pair_idx
    held_mask = np.array([every[p] in set(held) for p in pair_idx])
    return {
        "classes": len(every),
        "accuracy": float(correct.mean() * 100),
        "held_out_accuracy": float(correct[held_mask].mean() * 100) if held_mask.any() else None,
        "seen_accuracy": float(correct[~held_mask].mean() * 100),
        "chance": 100.0 / len(every),
    }
