"""encode: every training view and test image of a dataset through CLIP's image encoder, once.

Shared by every backbone that leaves the image encoder untouched, so
adding such a backbone never re-encodes an image.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pipeline.config import to_plain
from pipeline.device import pick_device
from pipeline.features.encoded import encode_views
from pipeline.features.encoder import image_encoder
from pipeline.features.shards import (
    Rank,
    barrier,
    join_parts,
    launched_rank,
    part_is_done,
    part_path,
    process_group,
    shard_range,
)
from pipeline.features.views_dataset import ImageViews, view_sets
from pipeline.fingerprint import file_digest, fingerprint, stat_digest
from pipeline.manifest import read_prepared
from pipeline.masks.store import MaskStore
from pipeline.models import clip_of
from pipeline.paths import encoded_path, masks_path, prepared_dir

from ._common import encode_workers, progress_bar, start


def resume_key(params, seeds: list[int], train: ImageViews, test: ImageViews, device) -> str:
    """Everything an encoded row depends on, so a killed run resumes only onto rows that are still right.

    Besides the settings: the mask store's and the checkpoint's bytes (the same
    path may hold new content), and each image path with its size and mtime.
    """
    pretrained = Path(params.clip.pretrained or "").expanduser()
    images = [stat_digest(data.root, data.impaths) for data in (train, test)]
    return fingerprint(
        {
            "clip": to_plain(params.clip),
            "encode": to_plain(params.encode),
            "seeds": seeds,
            "n": [len(train), len(test)],
            "device": device.type,
            "images": images,
            "masks": file_digest(train.masks.path) if train.masks is not None else None,
            "checkpoint": file_digest(pretrained) if pretrained.is_file() else None,
        }
    )


def run(dataset: str, params_file: str = "params.yaml") -> None:
    """Encode `dataset` in this process, or, launched by torchrun on N processes, one shard per rank joined by
    rank 0 into the same file (pipeline/features/shards.py)."""
    params = start(params_file)
    cfg, runtime = params.encode, params.runtime
    seeds = list(params.seeds)
    rank = launched_rank()
    device = pick_device(runtime.device)
    if rank.distributed and device.type == "cuda":
        device = torch.device("cuda", rank.local_rank)
    torch.manual_seed(0)
    prepared = read_prepared(prepared_dir(dataset))
    clip = clip_of(params, device)
    train, test = view_sets(prepared, MaskStore(masks_path(dataset)), seeds, cfg, clip.image_size, clip.mean, clip.std)
    attrs = {
        "dataset": dataset,
        "clip_model": clip.name,
        "clip_pretrained": clip.pretrained,
        "fingerprint": resume_key(params, seeds, train, test, device),
    }
    encode = image_encoder(clip.model.encode_image, device, cfg.precision, cfg.channels_last, runtime.encode_batch_size)
    out, run_attrs = encoded_path(dataset), attrs
    with process_group(rank):
        if rank.distributed:
            batch = runtime.encode_batch_images
            train = train.subset(*shard_range(len(train), batch, rank.rank, rank.world))
            test = test.subset(*shard_range(len(test), batch, rank.rank, rank.world))
            out = part_path(encoded_path(dataset), rank)
            attrs = {
                **attrs,
                "fingerprint": fingerprint({"run": attrs["fingerprint"], "part": [rank.rank, rank.world]}),
            }
        print(
            f"encoding {dataset}: {len(train)} training images x {train.views} views (+ foreground views), "
            f"{len(test)} test images, {clip.name} on {device}"
            + (f" (rank {rank.rank} of {rank.world}, its shard)" if rank.distributed else "")
        )
        if rank.distributed and part_is_done(out, attrs["fingerprint"]):
            print(f"{out} is complete: kept")
        else:
            _encode(out, train, test, encode, clip.embed_dim, attrs, cfg, runtime, device)
        if rank.distributed:
            barrier(rank)  # every part written
            if rank.rank == 0:
                parts = [part_path(encoded_path(dataset), Rank(k, rank.world)) for k in range(rank.world)]
                join_parts(encoded_path(dataset), parts, run_attrs)
                print(f"joined {rank.world} parts into {encoded_path(dataset)}")
            barrier(rank)  # no rank exits while the join could still fail


def _encode(out, train, test, encode, dim: int, attrs: dict, cfg, runtime, device) -> None:
    t0 = time.perf_counter()
    with progress_bar("encode images", len(train) + len(test)) as advance:
        stats = encode_views(
            out,
            train,
            test,
            encode,
            dim,
            attrs,
            cfg.dtype,
            runtime.encode_batch_images,
            encode_workers(runtime.encode_workers, device),
            advance,
            pin_memory=device.type == "cuda",
        )
    wall = time.perf_counter() - t0
    print(
        f"encoded {stats.views} views of {stats.images} images in {wall:.1f} s: "
        f"{stats.views / max(wall, 1e-9):.0f} views/s "
        f"end to end, {stats.views_per_s:.0f} views/s in the encoder"
    )
