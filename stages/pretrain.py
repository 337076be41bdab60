"""pretrain: the built-in benchmark's tiny CLIP, trained on synthetic image-caption pairs."""

from __future__ import annotations

import logging

import torch

from pipeline.atomic import write_json
from pipeline.config import to_plain
from pipeline.device import pick_device
from pipeline.models import load_clip, save_checkpoint
from pipeline.paths import model_card, model_checkpoint
from pipeline.pretrain import train_clip, zero_shot_accuracy

from ._common import progress_bar, start


def run(params_file: str = "params.yaml") -> None:
    params = start(params_file)
    model_name = params.pretrain.model
    device = pick_device(params.runtime.device)
    spec = params.pretrain.spec()
    torch.manual_seed(spec.seed)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that a random init is random
    clip = load_clip(model_name, None, device=device)
    if clip.image_size != spec.image_size:
        raise ValueError(
            f"pretrain.image_size {spec.image_size} differs from {model_name}'s input size {clip.image_size}"
        )
    print(
        f"pretraining {model_name} ({sum(p.numel() for p in clip.model.parameters()) / 1e6:.2f} M parameters) "
        f"for {spec.steps} steps of {spec.batch_size} on {device}"
    )
    with progress_bar("pretrain steps", spec.steps) as advance:
        losses = train_clip(
            clip.model,
            clip.tokenizer,
            clip.mean,
            clip.std,
            spec,
            device=device,
            progress=advance,
            log=lambda msg: print(msg),
        )
    acc = zero_shot_accuracy(clip.model, clip.tokenizer, clip.mean, clip.std, spec, device=device)
    print(
        f"zero-shot accuracy on {acc['classes']} classes: {acc['accuracy']:.1f}% "
        f"(held-out pairs {acc['held_out_accuracy']:.1f}%, chance {acc['chance']:.1f}%)"
    )
    save_checkpoint(
        clip.model, model_checkpoint(model_name), model_name, {"pretrain": to_plain(spec), "zero_shot": acc}
    )
    write_json(
        model_card(model_name),
        {"model": model_name, "final_loss": sum(losses[-20:]) / len(losses[-20:]) if losses else None, **acc},
    )
