"""Shared set-up of the benchmarks: a small synthetic dataset with masks and a frozen CLIP."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.datasets import load_dataset
from pipeline.datasets.synthetic import SyntheticSpec, generate
from pipeline.masks import MaskRequest, create_segmenter
from pipeline.masks.store import MaskStore, MaskStoreWriter, flag_of, resize_shorter
from pipeline.models import load_clip

logging.getLogger().setLevel(logging.ERROR)


class Timer:
    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0


def dataset(root: Path, n_classes_side: tuple[int, int], per_class: int, size: int):
    spec = SyntheticSpec(
        image_size=size,
        train_per_class=per_class,
        val_per_class=1,
        test_per_class=2,
        n_shapes=n_classes_side[0],
        n_colours=n_classes_side[1],
    )
    generate(root, spec)
    return load_dataset("synthetic", root)


def masks_for(data, path: Path, size: int) -> MaskStore:
    seg = create_segmenter("groundtruth")
    writer = MaskStoreWriter(path, size, {"fingerprint": "bench"})
    rows = []
    for it in data.train + data.test:
        req = MaskRequest(str(data.root), it.impath, it.classname, "synthetic")
        from pipeline.images import load_rgb

        m = seg.segment(np.asarray(load_rgb(req.path)), req)
        rows.append((it.impath, resize_shorter(m, size), float(m.mean()), flag_of(m)))
    writer.add_batch(rows)
    return MaskStore(writer.finish())


def clip_model(name: str, device: torch.device):
    clip = load_clip(name, "", device=device)
    if device.type == "cuda":
        clip.model = clip.model.to(memory_format=torch.channels_last)
    return clip


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="fvgpt-bench-"))


def peak_memory_mb(device: torch.device) -> float | str:
    """Peak GPU memory since the last reset; on CPU the process peak is monotonic, so not comparable per loop."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return "n/a (CPU)"
