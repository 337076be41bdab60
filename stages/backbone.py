"""backbone: tune a prompt backbone on the base classes of one seed's few-shot split (base-to-new), or on every
class of a cross-dataset source (`cross`)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from pipeline.atomic import atomic_dir
from pipeline.backbones import backbone_template, create_backbone, tuning
from pipeline.config import to_plain
from pipeline.device import pick_device
from pipeline.fingerprint import fingerprint
from pipeline.manifest import read_prepared
from pipeline.models import clip_of
from pipeline.paths import backbone_dir, cross_backbone_dir, prepared_dir
from pipeline.transforms import LabelledImages, train_transform

from ._common import progress_bar, start


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def print_epoch(row: dict) -> None:
    """One epoch's log row as one line, printed while training goes on."""
    print("  " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)


def run(dataset: str, backbone: str, seed: int, params_file: str = "params.yaml"):
    """Tune on the base classes of `dataset` (base-to-new)."""
    params = start(params_file)
    recipe = params.backbone.recipe(dataset, backbone)
    tune(params, dataset, backbone, seed, "base", recipe, backbone_dir(dataset, backbone, seed))


def cross(source: str, backbone: str, seed: int, params_file: str = "params.yaml") -> None:
    """Cross-dataset: tune on every class of `source`, with `cross_dataset.backbone`'s changes to the recipe."""
    params = start(params_file)
    recipe = params.cross_dataset.recipe(params.backbone.recipe(source, backbone))
    tune(params, source, backbone, seed, None, recipe, cross_backbone_dir(source, backbone, seed))


def tune(params, dataset: str, backbone: str, seed: int, subset: str | None, recipe, out: Path) -> None:
    """Tune `backbone` with `recipe` on one seed's few-shot images of `subset`'s classes of `dataset` ("base",
    or None for every class) and save it to `out`."""
    device = pick_device(params.runtime.device)
    settings = params.backbone.settings_for(backbone, dataset)

    gen = seed_everything(seed)
    prepared = read_prepared(prepared_dir(dataset))
    clip = clip_of(params, device)
    template = backbone_template(backbone, prepared.classes["dataset"])
    train = prepared.fewshot_train(seed, subset)
    classes = prepared.classes[subset] if subset else list(range(len(prepared.classnames)))
    names = [prepared.classnames[y] for y in classes]
    # Labels inside the tuned classes: the base-to-new sublabel, or the class index when tuning on every class.
    labels = train.sublabel if subset else train.label
    model = create_backbone(backbone, clip, template, classnames=names, **settings).to(device)
    meta = {
        "dataset": dataset,
        "seed": seed,
        "class_subset": subset or "all",
        "clip_model": clip.name,
        "clip_pretrained": clip.pretrained,
        "params_fingerprint": fingerprint(
            {"clip": to_plain(params.clip), "recipe": to_plain(recipe), backbone: settings}
        ),
        "n_train": len(train),
        "classes": names,
    }
    log, states = [], []
    if model.needs_training:
        transform = train_transform(model.train_augment, clip.image_size, clip.mean, clip.std, model.train_crop_scale)
        data = LabelledImages(prepared.root, train.impath, labels, transform)
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=recipe.batch_size,
            shuffle=True,
            generator=gen,
            num_workers=params.runtime.backbone_workers,
            drop_last=False,
        )
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(
            f"{backbone} on {dataset} seed {seed}: {len(train)} images, {len(names)} {subset or 'all'} classes, "
            f"{n_params} learnable parameters, {recipe.epochs} epochs of {len(loader)} steps on {device}"
        )
        # The bar advances once per optimiser step, so its total is steps, not images or epochs.
        with progress_bar(f"{backbone} steps", recipe.epochs * len(loader)) as advance:
            # each epoch's state, for the trend of paper Fig. 5, which only a shared image encoder lets the
            # features stage read (its cached encodings serve every epoch)
            keep = states if model.shares_clip_image_encoder else None
            log = tuning.train(model.train(), loader, names, recipe, device, advance, print_epoch, keep)
    else:
        print(f"{backbone} on {dataset} seed {seed}: nothing to train (no learnable parameters); writing its settings")
    with atomic_dir(out) as tmp:
        tuning.save(tmp, model, settings, meta, log, states)
