"""pretrain: the built-in benchmark's tiny CLIP, trained on synthetic image-caption pairs."""

from __future__ import annotations

import logging

import torch

from pipeline.atomic import write_json
from pipeline.device import pick_device
from pipeline.models import load_clip, save_checkpoint
from pipeline.pretrain import PretrainSpec, train_clip, zero_shot_accuracy

from ._common import DATA, load_params, progress_bar, section

MODELS = DATA / "models"


def run(params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    cfg = dict(section(params, "pretrain"))
    model_name = cfg.pop("model")
    device = pick_device(cfg.pop("device", "auto"))
    spec = PretrainSpec(**cfg)
    torch.manual_seed(spec.seed)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that a random init is random
    clip = load_clip(model_name, None, device=device)
    if clip.image_size != spec.image_size:
        raise ValueError(f"pretrain.image_size {spec.image_size} differs from {model_name}'s input size {clip.image_size}")
    print(f"pretraining {model_name} ({sum(p.numel() for p in clip.model.parameters()) / 1e6:.2f} M parameters) "
          f"for {spec.steps} steps of {spec.batch_size} on {device}")
    with progress_bar("pretrain steps", spec.steps) as advance:
        losses = train_clip(clip.model, clip.tokenizer, clip.mean, clip.std, spec, device=device, progress=advance,
                            log=lambda msg: print(msg))
    acc = zero_shot_accuracy(clip.model, clip.tokenizer, clip.mean, clip.std, spec, device=device)
    print(f"zero-shot accuracy on {acc['classes']} classes: {acc['accuracy']:.1f}% "
          f"(held-out pairs {acc['held_out_accuracy']:.1f}%, chance {acc['chance']:.1f}%)")
    save_checkpoint(clip.model, MODELS / f"{model_name}.pt", model_name, {"pretrain": cfg, "zero_shot": acc})
    write_json(MODELS / f"{model_name}.json", {"model": model_name, "final_loss": sum(losses[-20:]) / len(losses[-20:]) if losses else None, **acc})
