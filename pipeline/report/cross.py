"""The cross-dataset report (Table 2): per source, accuracy on the source and on each target, of zero-shot CLIP,
each backbone and backbone + FVG-PT, mean ± std over seeds, plus the average over targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pandas as pd

from .tables import BACKBONE_NAMES, SYSTEMS

AVERAGE = "average over targets"


def collect_cross(metrics_path: Callable[[str, str], Path], sources, targets, backbones, seeds) -> pd.DataFrame:
    """One row per (source, dataset, backbone, seed) found: role (source | target) and every scalar metric."""
    rows = []
    for source in sources:
        for role, dataset in [("source", source)] + [("target", t) for t in targets]:
            path = Path(metrics_path(source, dataset))
            by_backbone = json.loads(path.read_text()) if path.is_file() else {}
            for backbone in backbones:
                for seed in seeds:
                    found = by_backbone.get(backbone, {}).get(f"seed{seed}")
                    if found is not None:
                        scalars = {k: v for k, v in found.items() if isinstance(v, (int, float))}
                        rows.append(
                            {"source": source, "role": role, "dataset": dataset, "backbone": backbone, "seed": seed}
                            | scalars
                        )
    return pd.DataFrame(rows)


def with_target_average(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` plus, per (source, backbone, seed), a row averaging the targets' accuracies (Table 2's "Avg.")."""
    targets = runs[runs.role == "target"]
    if targets.empty:
        return runs
    cols = [c for c in runs.columns if c.endswith(".acc")]
    mean = targets.groupby(["source", "backbone", "seed"], sort=False)[cols].mean().reset_index()
    mean["role"], mean["dataset"] = "average", AVERAGE
    return pd.concat([runs, mean], ignore_index=True)


def table2(runs: pd.DataFrame) -> pd.DataFrame:
    """Long form: per (source, dataset, backbone), the mean and std over seeds of each system's accuracy."""
    full = with_target_average(runs)
    cols = [f"{s}.acc" for s in SYSTEMS] + ["gain.acc"]
    keys = ["source", "dataset", "role", "backbone"]
    grouped = full.groupby(keys, sort=False)[cols]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = mean.join(std.add_suffix("_std")).join(grouped.size().rename("seeds")).reset_index()
    return out


def _cell(mean: float, std: float, seeds: int) -> str:
    return f"{mean:.2f}" if seeds < 2 or pd.isna(std) or std == 0 else f"{mean:.2f} ± {std:.2f}"


def table2_markdown(table: pd.DataFrame) -> str:
    """One Markdown table per source in the paper's layout: rows CLIP, then each backbone and + FVG-PT; columns
    the source, the average over targets, then each target."""
    blocks = []
    for source, block in table.groupby("source", sort=False):
        datasets = [source] + ([AVERAGE] if (block.role == "average").any() else [])
        datasets += list(dict.fromkeys(block[block.role == "target"].dataset))
        header = ["method", *(f"{d} (source)" if d == source else d for d in datasets)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        by = block.set_index(["dataset", "backbone"])
        backbones = list(dict.fromkeys(block.backbone))
        for label, backbone, system in _table2_rows(backbones):
            cells = []
            for d in datasets:
                r = by.loc[(d, backbone)] if (d, backbone) in by.index else None
                cells.append("" if r is None else _cell(r[f"{system}.acc"], r[f"{system}.acc_std"], int(r["seeds"])))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        seeds = int(block.seeds.max())
        blocks.append(
            f"Cross-dataset transfer, tuned on {source} (every class), {seeds} seed{'s' if seeds != 1 else ''}: "
            "accuracy (%) on the source's test split (base branch) and zero-shot on each target (new branch)\n\n"
            + "\n".join(lines)
        )
    note = (
        "Mean ± std over seeds. The average over targets is taken per seed, then over seeds. CLIP is zero-shot "
        "CLIP (the same for every backbone)."
    )
    return "\n\n".join(blocks + [note]) + "\n"


def _table2_rows(backbones: list[str]) -> list[tuple[str, str, str]]:
    rows = [("CLIP", backbones[0], "clip")]
    for b in backbones:
        rows += [(BACKBONE_NAMES.get(b, b), b, "backbone"), ("+FVG-PT", b, "fvgpt")]
    return rows


def cross_summary(table: pd.DataFrame) -> dict:
    """The metric `dvc metrics show` lists: per source and backbone, for the source, the target average and each
    target, the mean accuracy of CLIP, the backbone and + FVG-PT and the gain."""
    out: dict = {}
    for _, r in table.iterrows():
        entry = {s: float(r[f"{s}.acc"]) for s in SYSTEMS}
        entry["gain"] = float(r["fvgpt.acc"] - r["backbone.acc"])
        key = "source" if r["role"] == "source" else ("targets_average" if r["role"] == "average" else r["dataset"])
        out.setdefault(r["source"], {}).setdefault(r["backbone"], {})[key] = entry
    return out
