"""encode: every training view and test image of a dataset through CLIP's image encoder, once.

Shared by every backbone that leaves the image encoder untouched, so
adding such a backbone never re-encodes an image.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pipeline.device import pick_device
from pipeline.features.encoded import encode_views
from pipeline.features.encoder import image_encoder
from pipeline.features.views_dataset import ImageViews
from pipeline.fingerprint import file_digest, fingerprint, stat_digest
from pipeline.manifest import read_prepared
from pipeline.masks.store import MaskStore

from ._common import clip_from_params, encoded_path, load_params, masks_path, prepared_dir, progress_bar, section


def view_sets(prepared, masks, seeds: list[int], cfg: dict, size: int, mean, std) -> tuple[ImageViews, ImageViews]:
    """The few-shot base training images of every seed (V views each) and all test images (one view)."""
    train_paths = sorted(prepared.fewshot_union(seeds).impath)
    test_paths = list(dict.fromkeys(prepared.test().impath))
    common = dict(size=size, mean=mean, std=std, fill=cfg.get("fill", "mean"), seed=int(cfg.get("seed", 0)))
    train = ImageViews(prepared.root, train_paths, masks, views=int(cfg.get("views", 10)), train=True,
                       crop_scale=tuple(cfg.get("crop_scale", (0.08, 1.0))), **common)
    test = ImageViews(prepared.root, test_paths, masks, train=False, require_masks=False, **common)
    return train, test


def resume_key(params: dict, cfg: dict, seeds: list[int], train: ImageViews, test: ImageViews, device) -> str:
    """Everything an encoded row depends on, so a killed run resumes only onto rows that are still right.

    Besides the settings: the mask store's and the checkpoint's bytes (the same
    path may hold new content), and each image path with its size and mtime.
    """
    recipe = {k: v for k, v in cfg.items() if k not in ("workers", "batch_images", "batch_size", "device")}
    pretrained = Path(str(section(params, "clip").get("pretrained") or "")).expanduser()
    images = [stat_digest(data.root, data.impaths) for data in (train, test)]
    return fingerprint({"clip": params.get("clip"), "encode": recipe, "seeds": seeds, "n": [len(train), len(test)],
                        "device": device.type, "images": images,
                        "masks": file_digest(train.masks.path) if train.masks is not None else None,
                        "checkpoint": file_digest(pretrained) if pretrained.is_file() else None})


def run(dataset: str, params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    cfg = section(params, "encode")
    seeds = [int(s) for s in params.get("seeds", [1])]
    device = pick_device(cfg.get("device", "auto"))
    torch.manual_seed(0)
    prepared = read_prepared(prepared_dir(dataset))
    clip = clip_from_params(params, device)
    train, test = view_sets(prepared, MaskStore(masks_path(dataset)), seeds, cfg, clip.image_size, clip.mean, clip.std)
    attrs = {"dataset": dataset, "clip_model": clip.name, "clip_pretrained": clip.pretrained,
             "fingerprint": resume_key(params, cfg, seeds, train, test, device)}
    encode = image_encoder(clip.model.encode_image, device, cfg.get("precision", "bf16"), bool(cfg.get("channels_last", True)),
                           int(cfg.get("batch_size", 256)))
    print(f"encoding {dataset}: {len(train)} training images x {train.views} views (+ foreground views), "
          f"{len(test)} test images, {clip.name} on {device}")
    t0 = time.perf_counter()
    with progress_bar("encode images", len(train) + len(test)) as advance:
        stats = encode_views(encoded_path(dataset), train, test, encode, clip.embed_dim, attrs, cfg.get("dtype", "float16"),
                             int(cfg.get("batch_images", 32)), int(cfg.get("workers", 0)), advance)
    wall = time.perf_counter() - t0
    print(f"encoded {stats.views} views of {stats.images} images in {wall:.1f} s: {stats.views / max(wall, 1e-9):.0f} views/s "
          f"end to end, {stats.views_per_s:.0f} views/s in the encoder")
