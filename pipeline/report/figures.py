"""Figures of the report: accuracy, shift index, gate scores, example views, training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _save(fig, path: Path) -> None:
    from ..atomic import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def accuracy_bars(table: pd.DataFrame, path: Path) -> None:
    """Base, new and HM of CLIP, the backbone and + FVG-PT, one panel per dataset/backbone row."""
    n = len(table)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.0), squeeze=False)
    colours = {"clip": "#9e9e9e", "backbone": "#4c72b0", "fvgpt": "#dd8452"}
    values = table[[f"{s}.{k}" for s in colours for k in ("base", "new", "hm")]].to_numpy()
    low = max(0.0, float(values.min()) - 10)  # zoom in: the differences are a few points
    for ax, (_, row) in zip(axes[0], table.iterrows()):
        x = np.arange(3)
        for i, sys in enumerate(("clip", "backbone", "fvgpt")):
            vals = [row[f"{sys}.{s}"] for s in ("base", "new", "hm")]
            ax.bar(x + (i - 1) * 0.27, vals, 0.27, label={"fvgpt": "+FVG-PT"}.get(sys, sys), color=colours[sys])
        ax.set_xticks(x, ["base", "new", "HM"])
        ax.set_title(f"{row['dataset']} / {row['backbone']}", fontsize=9)
        ax.set_ylim(low, 100)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    _save(fig, path)


def shift_index(runs: pd.DataFrame, path: Path) -> None:
    """D_fg = KL(p_full || p_fg) on base test images: the backbone against + FVG-PT."""
    cols = ["shift.backbone.base", "shift.fvgpt.base"]
    if not set(cols) <= set(runs.columns):
        return
    g = runs.groupby("backbone", sort=False)[cols].mean()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    x = np.arange(len(g))
    ax.bar(x - 0.2, g[cols[0]], 0.4, label="backbone", color="#4c72b0")
    ax.bar(x + 0.2, g[cols[1]], 0.4, label="+FVG-PT", color="#dd8452")
    ax.set_xticks(x, g.index)
    ax.set_ylabel("D_fg (base test images)")
    ax.set_title("foreground shift index (lower: less reliant on background)", fontsize=8)
    ax.legend(fontsize=7)
    _save(fig, path)


def gate_scores(runs: pd.DataFrame, r_hists: dict[str, np.ndarray], path: Path) -> None:
    """Left: distribution of the trust score r on training views; right: mean b on base and new test images."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(7.5, 3.0))
    centres = (np.arange(10) + 0.5) / 10
    for name, hist in r_hists.items():
        a.plot(centres, hist / max(hist.sum(), 1), marker="o", label=name)
    a.set_xlabel("FRG trust score r (training views)")
    a.set_ylabel("fraction of views")
    a.legend(fontsize=7)
    if {"gate.b_base", "gate.b_new"} <= set(runs.columns):
        g = runs.groupby("backbone", sort=False)[["gate.b_base", "gate.b_new"]].mean()
        x = np.arange(len(g))
        b.bar(x - 0.2, g["gate.b_base"], 0.4, label="base test", color="#55a868")
        b.bar(x + 0.2, g["gate.b_new"], 0.4, label="new test", color="#c44e52")
        b.set_xticks(x, g.index)
        b.set_ylim(0, 1)
        b.set_ylabel("BRG weight on CLIP, mean b")
        b.legend(fontsize=7)
    _save(fig, path)


def example_views(examples: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]], path: Path) -> None:
    """Rows: training image, its mask, its foreground view."""
    n = len(examples)
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.0), squeeze=False)
    for j, (img, mask, fg, title) in enumerate(examples):
        for i, (arr, cmap) in enumerate(((img, None), (mask, "gray"), (fg, None))):
            axes[i][j].imshow(arr, cmap=cmap)
            axes[i][j].axis("off")
        axes[0][j].set_title(title, fontsize=7)
    for i, label in enumerate(("image", "mask", "foreground")):
        axes[i][0].text(
            -0.1, 0.5, label, transform=axes[i][0].transAxes, rotation=90, va="center", ha="right", fontsize=8
        )
    _save(fig, path)


def training_curves(logs: dict[str, pd.DataFrame], path: Path) -> None:
    """Each loss term per epoch and the mean gate scores, one line per run."""
    keys = ["fdc_ce", "frg_bce", "fdc_dist", "pc_ce", "pc_kl", "r"]
    fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys), 2.6))
    for name, log in logs.items():
        for ax, key in zip(axes, keys):
            if key in log:
                ax.plot(log["epoch"], log[key], label=name, lw=1)
    for ax, key in zip(axes, keys):
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
    axes[-1].legend(fontsize=6)
    _save(fig, path)
