"""Tuning a prompt backbone on few-shot base classes, and its saved form."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..atomic import atomic_path, write_json
from ..device import autocast
from ..models import ClipModel
from ..schedule import SGDRecipe, epoch_lr
from ..weights import read_weights
from . import create_backbone
from .base import Backbone

STATE_FILE = "learnable.pt"
META_FILE = "meta.json"
LOG_FILE = "train_log.csv"


def train(
    backbone: Backbone,
    loader: torch.utils.data.DataLoader,
    classnames: Sequence[str],
    recipe: SGDRecipe,
    device: torch.device,
    advance: Callable[[int], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    epoch_states: list | None = None,
) -> list[dict]:
    """SGD on the backbone's learnable parameters; one log row per epoch.

    `advance(1)` follows each optimiser step (epochs x len(loader) in all); `on_epoch(row)` gets each epoch's
    log row as soon as it is made; `epoch_states`, a list, gets the learned state after each epoch (for the
    per-epoch trend of paper Fig. 5).
    """
    params = [p for p in backbone.parameters() if p.requires_grad]
    if backbone.optimizer == "adamw":  # MMRL's recipe: Dassl's AdamW (betas 0.9, 0.999) with the same schedule
        opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    log = []
    for epoch in range(recipe.epochs):
        lr = epoch_lr(epoch, recipe.lr, recipe.epochs, recipe.warmup_epochs, recipe.warmup_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        totals: dict[str, float] = {}
        n = 0
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            with autocast(device, getattr(recipe, "precision", "bf16")):
                loss, parts = backbone.training_loss(images, labels, classnames)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                totals[k] = totals.get(k, 0.0) + v * len(labels)
            n += len(labels)
            if advance:
                advance(1)
        log.append({"epoch": epoch + 1, "lr": lr, **{k: v / max(n, 1) for k, v in totals.items()}})
        if epoch_states is not None:
            # a copy: on CPU learnable_state() shares the live parameters' storage
            epoch_states.append({k: v.clone() for k, v in backbone.learnable_state().items()})
        backbone.end_epoch(epoch, recipe.epochs)
        if on_epoch:
            on_epoch(log[-1])
    backbone.end_training()
    return log


def save(
    out_dir: Path, backbone: Backbone, config: dict, meta: dict, log: list[dict], epoch_states: list | None = None
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    if backbone.needs_training:
        saved = {"backbone": backbone.name, "config": config, "state": backbone.learnable_state()}
        if epoch_states:
            saved["epoch_states"] = list(epoch_states)
        with atomic_path(out_dir / STATE_FILE) as tmp:
            torch.save(saved, tmp)
    if log:
        rows = [",".join(log[0])] + [",".join(f"{row.get(k, '')}" for k in log[0]) for row in log]
        with atomic_path(out_dir / LOG_FILE) as tmp:
            tmp.write_text("\n".join(rows) + "\n")
    write_json(out_dir / META_FILE, {"backbone": backbone.name, "config": config, **meta})


def load_epoch_states(out_dir: Path) -> list[dict]:
    """The learned state after each epoch of tuning, first to last; [] for a backbone with nothing to train."""
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        return []
    return list(read_weights(path, "re-run the backbone stage (`dvc repro backbone`)").get("epoch_states", []))


def load(out_dir: Path, clip: ClipModel, template: str) -> Backbone:
    """Rebuild a backbone written by `save` on top of a loaded CLIP."""
    meta_path = Path(out_dir) / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: run the backbone stage first (`dvc repro backbone`)")
    meta = json.loads(meta_path.read_text())
    if meta.get("clip_model") and meta["clip_model"] != clip.name:
        raise ValueError(
            f"{out_dir} was tuned on CLIP {meta['clip_model']}, not {clip.name}; re-run the backbone stage"
        )
    backbone = create_backbone(meta["backbone"], clip, template, **meta.get("config", {}))
    state_path = Path(out_dir) / STATE_FILE
    if backbone.needs_training:
        saved = read_weights(state_path, "re-run the backbone stage (`dvc repro backbone`)")
        backbone.load_learnable_state(saved["state"])
    device = next(clip.model.parameters()).device
    return backbone.to(device).eval()
