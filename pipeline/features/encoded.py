"""Image encodings of one dataset: every training view and test image, encoded once.

Backbones that leave CLIP's image encoder untouched (zero-shot, CoOp,
KgCoOp) share these tensors; their per-run feature files copy the rows they need.
Written chunk by chunk into a pre-sized `.partial` HDF5 file whose
`done_train`/`done_test` attrs mark committed prefixes, so a killed run
resumes where it stopped; the final name appears only when complete.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np
import torch

from ..atomic import check_writable, close_quietly, hdf5_writes, partial_path
from .schema import (
    CHECKSUM,
    FeatureFileError,
    NonFiniteFeaturesError,
    check_finite,
    check_schema,
    open_readable,
    read_checked,
)
from .views_dataset import ImageViews

SCHEMA = 1


@dataclass
class EncodeStats:
    images: int = 0
    views: int = 0
    seconds: float = 0.0

    @property
    def views_per_s(self) -> float:
        return self.views / self.seconds if self.seconds else float("nan")


def create_encodings_file(
    path: Path,
    n_train: int,
    n_test: int,
    views: int,
    dim: int,
    dtype: str,
    attrs: dict,
    train_paths: Sequence[str],
    test_paths: Sequence[str],
) -> h5py.File:
    """A new, empty encodings file at `path` (open for writing), sized for every row; `done_*` attrs at 0."""
    f = h5py.File(path, "w")
    f.attrs.update({**attrs, "schema": SCHEMA, "views": views, "dim": dim, "done_train": 0, "done_test": 0})
    chunk = lambda n: max(1, min(n, 1024))  # noqa: E731
    tr, te = f.create_group("train"), f.create_group("test")
    tr.create_dataset("impath", data=np.asarray(train_paths, dtype=object), dtype=h5py.string_dtype())
    te.create_dataset("impath", data=np.asarray(test_paths, dtype=object), dtype=h5py.string_dtype())
    for name in ("feat_full", "feat_fg"):
        tr.create_dataset(
            name, (views, n_train, dim), dtype, chunks=(1, chunk(n_train), dim) if n_train else None, **CHECKSUM
        )
    tr.create_dataset("area", (views, n_train), np.float32, **CHECKSUM)
    for name in ("feat", "feat_fg"):
        te.create_dataset(name, (n_test, dim), dtype, chunks=(chunk(n_test), dim) if n_test else None, **CHECKSUM)
    te.create_dataset("area", (n_test,), np.float32, **CHECKSUM)
    te.create_dataset("has_fg", (n_test,), bool, **CHECKSUM)
    return f


def _open_partial(
    tmp: Path, fingerprint: str, train_paths: Sequence[str], test_paths: Sequence[str]
) -> h5py.File | None:
    """The partial file of a killed run if it was made from exactly these inputs, else None (and it is deleted)."""
    if not tmp.exists():
        return None
    try:
        f = h5py.File(tmp, "a")
    except OSError:
        f = None  # unreadable: start over
    if f is not None:
        try:
            if (
                f.attrs.get("fingerprint") == fingerprint
                and f.attrs.get("schema") == SCHEMA
                and list(f["train/impath"].asstr()[:]) == list(train_paths)
                and list(f["test/impath"].asstr()[:]) == list(test_paths)
            ):
                return f
        except (OSError, KeyError):
            pass
        f.close()
    tmp.unlink()
    return None


def _encode_split(
    f: h5py.File,
    split: str,
    data: ImageViews,
    encode: Callable[[torch.Tensor], torch.Tensor],
    batch_images: int,
    workers: int,
    stats: EncodeStats,
    advance,
    pin_memory: bool = False,
) -> None:
    done_key = f"done_{split}"
    start = int(f.attrs[done_key])
    if advance and start:
        advance(start)
    todo = torch.utils.data.Subset(data, range(start, len(data)))
    loader = torch.utils.data.DataLoader(
        todo,
        batch_size=batch_images,
        num_workers=workers,
        shuffle=False,
        persistent_workers=False,
        pin_memory=pin_memory,  # page-locked batches copy to the GPU while it encodes the previous one
    )
    pos = start
    for full, fg, area, has in loader:
        b, v = full.shape[:2]
        t0 = time.perf_counter()
        x = torch.cat([full.flatten(0, 1), fg.flatten(0, 1)])
        feats = encode(x).float().cpu().numpy()
        stats.seconds += time.perf_counter() - t0
        f_full, f_fg = feats[: b * v].reshape(b, v, -1), feats[b * v :].reshape(b, v, -1)
        _check_batch(
            f.filename, split, data.impaths[pos : pos + b], f_full, f_fg, area.numpy() if split == "train" else None
        )
        if split == "train":
            f["train/feat_full"][:, pos : pos + b] = f_full.transpose(1, 0, 2)
            f["train/feat_fg"][:, pos : pos + b] = f_fg.transpose(1, 0, 2)
            f["train/area"][:, pos : pos + b] = area.numpy().T
        else:
            f["test/feat"][pos : pos + b] = f_full[:, 0]
            f["test/feat_fg"][pos : pos + b] = f_fg[:, 0]
            f["test/area"][pos : pos + b] = area[:, 0].numpy()
            f["test/has_fg"][pos : pos + b] = has.numpy()
        pos += b
        f.attrs[done_key] = pos  # commit point: everything before `pos` is final
        f.flush()
        stats.images += b
        stats.views += 2 * b * v
        if advance:
            advance(b)


def _check_batch(
    path: str, split: str, impaths: Sequence[str], f_full: np.ndarray, f_fg: np.ndarray, area: np.ndarray | None
) -> None:
    """Refuse to commit a batch with NaN or inf features (a broken checkpoint, or fp16/bf16 overflow)."""
    bad = ~np.isfinite(f_full).all(axis=(1, 2)) | ~np.isfinite(f_fg).all(axis=(1, 2))
    if area is not None:
        bad |= ~np.isfinite(area).all(axis=1)
    if bad.any():
        first = impaths[int(np.flatnonzero(bad)[0])]
        raise NonFiniteFeaturesError(
            f"{path}: the image encoder gave NaN or inf for {int(bad.sum())} of {len(bad)} {split} images "
            f"(e.g. {first}); "
            "nothing of this batch was kept. Check clip.pretrained, or set encode.precision: fp32"
        )


def encode_views(
    path: str | Path,
    train: ImageViews,
    test: ImageViews,
    encode: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    attrs: dict,
    dtype: str = "float16",
    batch_images: int = 32,
    workers: int = 0,
    advance=None,
    pin_memory: bool = False,
) -> EncodeStats:
    """Encode every view of `train` and `test` into `path` (resumable, atomic); `workers` DataLoader processes
    decode and augment while the encoder runs (`pin_memory` on CUDA)."""
    path = Path(path)
    check_writable(path.parent)
    tmp = partial_path(path)
    stats = EncodeStats()
    with hdf5_writes(tmp):
        f = _open_partial(tmp, attrs["fingerprint"], train.impaths, test.impaths)
        if f is None:
            f = create_encodings_file(
                tmp, len(train), len(test), train.views, dim, dtype, attrs, train.impaths, test.impaths
            )
        try:
            with torch.inference_mode():
                _encode_split(f, "train", train, encode, batch_images, workers, stats, advance, pin_memory)
                _encode_split(f, "test", test, encode, batch_images, workers, stats, advance, pin_memory)
        except BaseException:
            close_quietly(f)  # the committed rows stay in the partial file for the next run
            raise
        f.close()
    os.replace(tmp, path)
    return stats


class EncodedViews:
    """Reader of a finished encodings file (in memory: one dataset's features are small)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FeatureFileError(f"{self.path} not found: run the encode stage (`dvc repro encode`) first")
        with open_readable(self.path, "encode") as f:
            check_schema(f, self.path, SCHEMA)
            self.attrs = dict(f.attrs)
            if f.attrs["done_train"] != len(f["train/impath"]) or f.attrs["done_test"] != len(f["test/impath"]):
                raise FeatureFileError(f"{self.path} is incomplete; delete it and re-run the encode stage")
            self.train_paths = list(f["train/impath"].asstr()[:])
            self.test_paths = list(f["test/impath"].asstr()[:])
            self.train = {
                k: read_checked(f, f"train/{k}", self.path, "encode") for k in ("feat_full", "feat_fg", "area")
            }
            self.test = {
                k: read_checked(f, f"test/{k}", self.path, "encode") for k in ("feat", "feat_fg", "area", "has_fg")
            }
        check_finite(
            self.path,
            {**{f"train/{k}": v for k, v in self.train.items()}, **{f"test/{k}": v for k, v in self.test.items()}},
            "delete it and re-run the encode stage",
        )

    def train_rows(self, impaths: Sequence[str]) -> np.ndarray:
        index = {p: i for i, p in enumerate(self.train_paths)}
        missing = [p for p in impaths if p not in index]
        if missing:
            raise FeatureFileError(
                f"{self.path} has no views of {len(missing)} training images, e.g. {missing[:3]}; "
                "re-run the encode stage for the current seeds"
            )
        return np.asarray([index[p] for p in impaths], dtype=np.int64)
