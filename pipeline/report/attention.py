"""The attention figure (paper Figs. 1, 6, 7): per chosen test image, the image with its mask outlined, then the
Grad-CAM map of CLIP, the backbone and backbone + FVG-PT over it, each titled with its prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .figures import SYSTEM_LABELS, _save, plt

# The kinds of case the figure shows, in its order: FVG-PT's correction first, then what tuning gains, then
# a typical image every model gets right.
CASE_KINDS = ("backbone wrong, + FVG-PT right", "CLIP wrong, backbone right", "all right")
COLUMNS = ("image", "clip", "backbone", "fvgpt")


def case_kind(clip_right: bool, backbone_right: bool, fvgpt_right: bool) -> str | None:
    """Which of CASE_KINDS a test image is (the first that fits), or None."""
    if not backbone_right and fvgpt_right:
        return CASE_KINDS[0]
    if not clip_right and backbone_right:
        return CASE_KINDS[1]
    if clip_right and backbone_right and fvgpt_right:
        return CASE_KINDS[2]
    return None


def attention_figure(panels: list[dict], footer: str, title: str, path: Path, marks: bool = True) -> Figure:
    """One row per panel: {"image" [H, W, 3], "mask" [H, W], "title", "maps" {model: [H, W]}, "labels"
    {model: class name}, "right" {model: bool}}; `marks` prints right/wrong after each label (images with a
    known class). Without panels, one line saying no test image fits a kind."""
    rows, cols = max(1, len(panels)), len(COLUMNS)
    top, bottom, side = 1.4, 0.9, 0.3  # inches: a two-line title above, the share table below
    width, height = 1.9 * cols + 2 * side, 2.1 * rows + top + bottom
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(width, height),
        squeeze=False,
        gridspec_kw={
            "left": side / width,
            "right": 1 - side / width,
            "top": 1 - top / height,
            "bottom": bottom / height,
            "hspace": 0.45,
            "wspace": 0.25,
        },
    )
    for row, panel in zip(axes, panels):
        for ax, column in zip(row, COLUMNS):
            ax.imshow(panel["image"], interpolation="nearest")
            if column != "image":
                ax.imshow(panel["maps"][column], cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear")
                mark = (" (right)" if panel["right"][column] else " (wrong)") if marks else ""
                name = "CLIP" if column == "clip" else "backbone" if column == "backbone" else SYSTEM_LABELS[column]
                ax.set_title(f"{name}: {panel['labels'][column]}{mark}", fontsize=6.5)
            else:
                ax.set_title(panel["title"], fontsize=6.5, loc="left")
            if np.asarray(panel["mask"]).any():
                ax.contour(np.asarray(panel["mask"], dtype=float), levels=[0.5], colors="white", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
    if not panels:
        axes[0, 0].text(0, 0.5, "no test image fits any kind of case", fontsize=9)
        for ax in axes.flat:
            ax.axis("off")
    fig.suptitle(title, fontsize=8.5, y=1 - 0.15 / height)
    fig.text(0.01, 0.01, footer, fontsize=7, family="monospace", va="bottom")
    return _save(fig, path)
