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
from pipeline.features.run_features import write_run_features
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


def random_feature_file(
    path: Path, labels, n_classes: int, width: int, views: int, logit_scale: float = 100.0, seed: int = 0
) -> Path:
    """A feature file of the features stage's shapes with random unit features (the heads' cost does not depend
    on the values): `labels` [N] base-class training labels, the first n_classes // 2 classes base, 8 test
    images."""
    rng = np.random.default_rng(seed)

    def unit(*shape: int) -> np.ndarray:
        x = rng.standard_normal((*shape, width))
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    n, m = len(labels), 8
    arrays = {
        "train/feat_full": unit(views, n),
        "train/feat_fg": unit(views, n),
        "train/area": rng.uniform(0.05, 0.5, (views, n)),
        "train/label": np.asarray(labels),
        "test/feat": unit(m),
        "test/feat_fg": unit(m),
        "test/area": np.full(m, 0.2),
        "test/has_fg": np.ones(m, bool),
        "test/label": np.arange(m) % n_classes,
        "test/subset": (np.arange(m) % n_classes >= n_classes // 2).astype(np.int64),
        "text/backbone": unit(n_classes),
        "text/clip": unit(n_classes),
    }
    attrs = {
        "classnames": [f"class{i}" for i in range(n_classes)],
        "base": list(range(n_classes // 2)),
        "new": list(range(n_classes // 2, n_classes)),
        "logit_scale": logit_scale,
    }
    write_run_features(path, arrays, attrs)
    return path
