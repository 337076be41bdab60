"""backbone: tune a prompt backbone on the base classes of one seed's few-shot split."""

from __future__ import annotations

import random

import numpy as np
import torch

from pipeline.atomic import atomic_dir
from pipeline.backbones import create_backbone, tuning
from pipeline.device import pick_device
from pipeline.fingerprint import fingerprint
from pipeline.images import LabelledImages, train_transform
from pipeline.manifest import read_prepared

from ._common import backbone_dir, backbone_template, clip_from_params, load_params, prepared_dir, progress_bar, section


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def recipe_for(cfg: dict, dataset: str, backbone: str) -> tuple[tuning.TrainRecipe, dict]:
    """The training recipe of one dataset/backbone and the backbone's own settings, from the `backbone` section:
    `train`, then the backbone's `epochs` if it sets one, then `overrides["<dataset>/<backbone>"]`."""
    recipe_cfg = {k: v for k, v in (cfg.get("train") or {}).items() if k not in ("workers", "device")}
    bb_cfg = dict(cfg.get(backbone) or {})
    recipe_cfg["epochs"] = int(bb_cfg.pop("epochs", recipe_cfg.get("epochs", 10)))
    recipe_cfg.update((cfg.get("overrides") or {}).get(f"{dataset}/{backbone}", {}))
    return tuning.TrainRecipe(**recipe_cfg), bb_cfg


def run(dataset: str, backbone: str, seed: int, params_file: str = "params.yaml"):
    params = load_params(params_file)
    cfg = section(params, "backbone")
    workers = int(cfg.get("train", {}).get("workers", 0))
    device = pick_device(cfg.get("train", {}).get("device", "auto"))
    recipe, bb_cfg = recipe_for(cfg, dataset, backbone)

    gen = seed_everything(seed)
    prepared = read_prepared(prepared_dir(dataset))
    clip = clip_from_params(params, device)
    template = backbone_template(prepared, backbone)
    train = prepared.fewshot_train(seed, "base")
    base_names = [prepared.classnames[y] for y in prepared.classes["base"]]
    model = create_backbone(backbone, clip, template, classnames=base_names, **bb_cfg).to(device)
    meta = {"dataset": dataset, "seed": seed, "clip_model": clip.name, "clip_pretrained": clip.pretrained,
            "params_fingerprint": fingerprint({"clip": params.get("clip"), "recipe": recipe.__dict__, backbone: cfg.get(backbone)}),
            "n_train": len(train), "base_classes": base_names}
    log = []
    if model.needs_training:
        transform = train_transform(model.train_augment, clip.image_size, clip.mean, clip.std)
        data = LabelledImages(prepared.root, train.impath, train.sublabel, transform)
        loader = torch.utils.data.DataLoader(data, batch_size=recipe.batch_size, shuffle=True, generator=gen,
                                             num_workers=workers, drop_last=False)
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"{backbone} on {dataset} seed {seed}: {len(train)} images, {len(base_names)} base classes, "
              f"{n_params} learnable parameters, {recipe.epochs} epochs on {device}")
        with progress_bar(f"{backbone} epochs", recipe.epochs * len(data)) as advance:
            log = tuning.train(model.train(), loader, base_names, recipe, device, advance)
        for row in log:
            print("  " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    with atomic_dir(backbone_dir(dataset, backbone, seed)) as tmp:
        tuning.save(tmp, model, bb_cfg, meta, log)
