"""The paper's table layouts from per-run metrics files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pandas as pd

SYSTEMS = ("clip", "backbone", "fvgpt")
SPLITS = ("base", "new", "hm")


def collect(metrics_path: Callable[[str, str], Path], datasets, backbones, seeds) -> pd.DataFrame:
    """One row per existing run with every scalar metric; `metrics_path(dataset, backbone)` locates the file
    holding each seed's metrics under `seed<k>`."""
    rows = []
    for d in datasets:
        for b in backbones:
            path = Path(metrics_path(d, b))
            by_seed = json.loads(path.read_text()) if path.is_file() else {}
            for s in seeds:
                m = by_seed.get(f"seed{s}")
                if m is not None:
                    scalars = {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                    rows.append({"dataset": d, "backbone": b, "seed": s, **scalars})
    return pd.DataFrame(rows)


def _hm(base, new):
    total = base + new
    return (2 * base * new / total.where(total > 0)).fillna(0.0)


def with_paper_hm(frame: pd.DataFrame, systems=SYSTEMS) -> pd.DataFrame:
    """Recompute `<system>.hm` from `<system>.base` and `<system>.new` (and `gain.hm` when both ends exist)."""
    out = frame.copy()
    for sys in systems:
        if f"{sys}.base" in out and f"{sys}.new" in out:
            out[f"{sys}.hm"] = _hm(out[f"{sys}.base"], out[f"{sys}.new"])
    if "gain.hm" in out and "fvgpt.hm" in out and "backbone.hm" in out:
        out["gain.hm"] = out["fvgpt.hm"] - out["backbone.hm"]
    return out


def average_runs(runs: pd.DataFrame, by: list[str], cols: list[str], systems=SYSTEMS) -> pd.DataFrame:
    """Mean of `cols` over the runs (seeds) of each group, the paper's way: every HM is HM(mean base, mean new),
    never the mean of per-run HMs. `<col>_std` is the std over runs of each column (per-run HMs for HM)."""
    g = runs.groupby(by, sort=False)
    mean = with_paper_hm(g[cols].mean(), systems)
    std = g[cols].std().fillna(0.0).add_suffix("_std")
    out = pd.concat([mean, std], axis=1)
    out["seeds"] = g[cols[0]].count()
    return out


TABLE_COLUMNS = [f"{sys}.{sp}" for sys in SYSTEMS for sp in SPLITS]


def base_to_new(runs: pd.DataFrame) -> pd.DataFrame:
    """Base/new/HM per dataset and backbone over seeds, CLIP vs backbone vs + FVG-PT (Table 1 layout)."""
    out = average_runs(runs, ["dataset", "backbone"], TABLE_COLUMNS)
    out["fvgpt.gain_hm"] = out["fvgpt.hm"] - out["backbone.hm"]
    return out.reset_index()


def average_over_datasets(runs: pd.DataFrame) -> pd.DataFrame:
    """The "Average over datasets" row per backbone: for each seed, base and new averaged over the datasets and
    HM taken of those; then over seeds as in `base_to_new` (so HM = HM(mean base, mean new) over everything)."""
    per_seed = with_paper_hm(runs.groupby(["backbone", "seed"], sort=False)[TABLE_COLUMNS].mean()).reset_index()
    out = average_runs(per_seed, ["backbone"], TABLE_COLUMNS)
    out["fvgpt.gain_hm"] = out["fvgpt.hm"] - out["backbone.hm"]
    out = out.reset_index()
    out.insert(0, "dataset", "average")
    return out


CONVENTION = (
    "Base and New are means over seeds (and over datasets in the average row); HM is the harmonic mean "
    "of those means, the paper's convention, not the mean of per-run HMs. ± is the std over seeds of "
    "each column (for HM, of the per-seed HMs)."
)


def markdown(table: pd.DataFrame) -> str:
    """A compact Markdown table: per row, Base / New / HM of the backbone and of + FVG-PT."""

    def cell(r, key: str) -> str:
        std = r.get(key + "_std")
        return (
            f"{r[key]:.2f}"
            if std is None or pd.isna(std) or not r.get("seeds", 0) or r["seeds"] < 2
            else f"{r[key]:.2f} ± {std:.2f}"
        )

    lines = [
        "| dataset | backbone | CLIP HM | Base | New | HM | +FVG-PT Base | New | HM | ΔHM | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        cells = [
            cell(r, k)
            for k in ("clip.hm", "backbone.base", "backbone.new", "backbone.hm", "fvgpt.base", "fvgpt.new", "fvgpt.hm")
        ]
        seeds = "" if pd.isna(r.get("seeds")) else int(r["seeds"])
        lines.append(
            f"| {r['dataset']} | {r['backbone']} | " + " | ".join(cells) + f" | {r['fvgpt.gain_hm']:+.2f} | {seeds} |"
        )
    return "\n".join(lines + ["", CONVENTION]) + "\n"
