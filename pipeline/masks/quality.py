"""What a mask store looks like: area histogram, empty/full/missing counts, IoU against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..images import load_rgb
from . import create_segmenter
from .base import MaskRequest
from .store import FLAG_NAMES, MaskStore, resize_shorter


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def summary(store: MaskStore) -> dict:
    counts = {name: int((store.flags == code).sum()) for code, name in FLAG_NAMES.items()}
    return {
        "images": len(store),
        **counts,
        "stretched": int(store.stretched.sum()),
        "area_mean": float(store.areas.mean()) if len(store) else None,
        "area_median": float(np.median(store.areas)) if len(store) else None,
        "segmenter": str(store.attrs.get("segmenter")),
    }


def iou_against_groundtruth(
    requests: Sequence[MaskRequest], segmenters: dict[str, dict], store: MaskStore | None = None
) -> dict:
    """Mean IoU of each named segmenter (and of the store, if given) against the synthetic ground truth."""
    truth = create_segmenter("groundtruth")
    scores: dict[str, list[float]] = {name: [] for name in segmenters}
    if store is not None:
        scores["store"] = []
    made = {name: create_segmenter(name, **cfg) for name, cfg in segmenters.items()}
    for r in requests:
        image = np.asarray(load_rgb(r.path))
        gt = truth.segment(image, r)
        for name, seg in made.items():
            scores[name].append(iou(seg.segment(image, r), gt))
        if store is not None and r.impath in store:
            stored = store.mask(r.impath)
            scores["store"].append(iou(stored, resize_shorter(gt, min(stored.shape))))
    return {name: float(np.mean(v)) for name, v in scores.items() if v}


def area_histogram(store: MaskStore, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.hist(store.areas, bins=40, range=(0, 1), color="#3a6ea5")
    ax.set_xlabel("foreground area ratio A(m)")
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def example_views(examples: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]], path: Path, title: str):
    """Rows: training image, its mask, its foreground view; `title` says which dataset and seed they come from.
    Returns the (closed) figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path

    n = len(examples)
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.4), squeeze=False, layout="constrained")
    for j, (img, mask, fg, name) in enumerate(examples):
        for i, (arr, cmap) in enumerate(((img, None), (mask, "gray"), (fg, None))):
            axes[i][j].imshow(arr, cmap=cmap)
            axes[i][j].axis("off")
        axes[0][j].set_title(name, fontsize=7)
    for i, label in enumerate(("image", "mask", "foreground")):
        axes[i][0].text(
            -0.1, 0.5, label, transform=axes[i][0].transAxes, rotation=90, va="center", ha="right", fontsize=8
        )
    fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return fig
