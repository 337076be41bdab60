"""Encoding one dataset on several processes (GPUs or machines): each rank encodes a disjoint shard of the
images into its own part file, and rank 0 joins the parts into the one encodings file the later stages read.

Launched with PyTorch's `torchrun`, which sets RANK, WORLD_SIZE and LOCAL_RANK. A rank's shard is a block of
whole encoder batches of each split (training images, test images), so every batch holds the same images as
in a one-process run, and each image's views depend only on (encode.seed, view, path): the joined file equals
a one-process encode bit for bit (tests/test_encode_distributed.py). A part is an ordinary encodings file,
written through the same resumable partial file, so a killed rank resumes its own shard on the next launch.
"""

from __future__ import annotations

import datetime
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from ..atomic import close_quietly, hdf5_writes, partial_path
from .encoded import SCHEMA, create_encodings_file
from .schema import open_readable

# Ranks wait for the slowest shard at the join; on a large dataset that can be hours, far above the
# process group's default timeout of 30 minutes.
JOIN_TIMEOUT = datetime.timedelta(days=2)
COPY_ROWS = 4096  # rows per copy when joining: memory stays bounded whatever the dataset size


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def launched_rank() -> Rank:
    """This process's rank as torchrun (or any launcher setting RANK/WORLD_SIZE/LOCAL_RANK) gave it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Rank()
    return Rank(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def process_group(rank: Rank) -> Iterator[None]:
    """The gloo process group for the join's barrier (gloo runs on every machine, with or without GPUs; the
    encoders themselves never communicate)."""
    if not rank.distributed:
        yield
        return
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank.rank, world_size=rank.world, timeout=JOIN_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(rank: Rank) -> None:
    if rank.distributed:
        import torch.distributed as dist

        dist.barrier()


def shard_range(n: int, batch: int, rank: int, world: int) -> tuple[int, int]:
    """Rank `rank`'s block [start, stop) of n items: whole batches of `batch`, split as evenly as they go."""
    batches = -(-n // batch)
    first, last = batches * rank // world, batches * (rank + 1) // world
    return min(n, first * batch), min(n, last * batch)


def parts_dir(path: Path) -> Path:
    """Where the ranks write their parts: next to the final file (on a filesystem every rank shares)."""
    return path.with_name(path.name + ".parts")


def part_path(path: Path, rank: Rank) -> Path:
    return parts_dir(path) / f"part{rank.rank:04d}-of-{rank.world:04d}.h5"


def part_is_done(path: Path, fingerprint: str) -> bool:
    """A finished part of exactly these inputs (a relaunch after one rank failed redoes only the others)."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("fingerprint") == fingerprint and f.attrs.get("schema") == SCHEMA
    except OSError:
        return False


def join_parts(path: Path, parts: Sequence[Path], attrs: dict) -> None:
    """Concatenate the parts (in rank order) into one encodings file at `path`, atomically, then delete them.
    `attrs` are the one-process run's attributes (its fingerprint, not the parts')."""
    handles = [open_readable(p, "encode") for p in parts]
    try:
        first = handles[0]
        train_paths = [p for f in handles for p in f["train/impath"].asstr()[:]]
        test_paths = [p for f in handles for p in f["test/impath"].asstr()[:]]
        views, dim = int(first.attrs["views"]), int(first.attrs["dim"])
        dtype = first["train/feat_full"].dtype
        tmp = partial_path(path)
        with hdf5_writes(tmp):
            if tmp.exists():
                tmp.unlink()
            out = create_encodings_file(
                tmp, len(train_paths), len(test_paths), views, dim, dtype, attrs, train_paths, test_paths
            )
            try:
                train_at = test_at = 0
                for f in handles:
                    n_train, n_test = len(f["train/impath"]), len(f["test/impath"])
                    for name in ("feat_full", "feat_fg", "area"):
                        _copy_rows(f[f"train/{name}"], out[f"train/{name}"], train_at, n_train, axis=1)
                    for name in ("feat", "feat_fg", "area", "has_fg"):
                        _copy_rows(f[f"test/{name}"], out[f"test/{name}"], test_at, n_test, axis=0)
                    train_at, test_at = train_at + n_train, test_at + n_test
                out.attrs["done_train"], out.attrs["done_test"] = train_at, test_at
            except BaseException:
                close_quietly(out)
                raise
            out.close()
        os.replace(tmp, path)
    finally:
        for f in handles:
            f.close()
    shutil.rmtree(parts_dir(path), ignore_errors=True)


def _copy_rows(source: h5py.Dataset, target: h5py.Dataset, at: int, n: int, axis: int) -> None:
    for start in range(0, n, COPY_ROWS):
        stop = min(n, start + COPY_ROWS)
        if axis == 0:
            target[at + start : at + stop] = source[start:stop]
        else:
            target[:, at + start : at + stop] = np.asarray(source[:, start:stop])
