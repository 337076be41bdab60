"""The paper's table layouts from per-run metrics files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

SYSTEMS = ("clip", "backbone", "fvgpt")
SPLITS = ("base", "new", "hm")


def collect(metrics_root: Path, datasets, backbones, seeds) -> pd.DataFrame:
    """One row per existing run with every scalar metric."""
    rows = []
    for d in datasets:
        for b in backbones:
            for s in seeds:
                path = Path(metrics_root) / d / b / f"seed{s}.json"
                if path.is_file():
                    m = json.loads(path.read_text())
                    rows.append({"dataset": d, "backbone": b, "seed": s,
                                 **{k: v for k, v in m.items() if isinstance(v, (int, float))}})
    return pd.DataFrame(rows)


def base_to_new(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean (and std over seeds) of base/new/HM per dataset and backbone, backbone vs + FVG-PT (Table 1 layout)."""
    cols = [f"{sys}.{sp}" for sys in SYSTEMS for sp in SPLITS]
    g = runs.groupby(["dataset", "backbone"], sort=False)
    mean, std = g[cols].mean(), g[cols].std().fillna(0.0)
    out = mean.round(2)
    out["fvgpt.gain_hm"] = (mean["fvgpt.hm"] - mean["backbone.hm"]).round(2)
    out["seeds"] = g["seed"].count()
    for c in ("backbone.hm", "fvgpt.hm"):
        out[c + "_std"] = std[c].round(2)
    return out.reset_index()


def average_over_datasets(table: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in table.columns if c not in ("dataset", "backbone", "seeds")]
    avg = table.groupby("backbone", sort=False)[cols].mean().round(2).reset_index()
    avg.insert(0, "dataset", "average")
    return avg


def markdown(table: pd.DataFrame) -> str:
    """A compact Markdown table: per row, Base / New / HM of the backbone and of + FVG-PT."""
    lines = ["| dataset | backbone | CLIP HM | Base | New | HM | +FVG-PT Base | New | HM | ΔHM | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['dataset']} | {r['backbone']} | {r['clip.hm']:.2f} | {r['backbone.base']:.2f} | "
                     f"{r['backbone.new']:.2f} | {r['backbone.hm']:.2f} | {r['fvgpt.base']:.2f} | {r['fvgpt.new']:.2f} | "
                     f"{r['fvgpt.hm']:.2f} | {r['fvgpt.gain_hm']:+.2f} | {r.get('seeds', '')} |")
    return "\n".join(lines) + "\n"
