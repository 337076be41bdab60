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
    for c in cols:
        out[c + "_std"] = std[c].round(2)
    return out.reset_index()


def average_over_datasets(table: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in table.columns if c not in ("dataset", "backbone", "seeds")]
    avg = table.groupby("backbone", sort=False)[cols].mean().round(2).reset_index()
    avg.insert(0, "dataset", "average")
    return avg


def markdown(table: pd.DataFrame) -> str:
    """A compact Markdown table: per row, Base / New / HM of the backbone and of + FVG-PT."""
    def cell(r, key: str) -> str:
        std = r.get(key + "_std")
        return f"{r[key]:.2f}" if std is None or pd.isna(std) or not r.get("seeds", 0) or r["seeds"] < 2 else f"{r[key]:.2f} ± {std:.2f}"

    lines = ["Mean ± std over seeds.", "",
             "| dataset | backbone | CLIP HM | Base | New | HM | +FVG-PT Base | New | HM | ΔHM | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        cells = [cell(r, k) for k in ("clip.hm", "backbone.base", "backbone.new", "backbone.hm", "fvgpt.base", "fvgpt.new", "fvgpt.hm")]
        seeds = "" if pd.isna(r.get("seeds")) else int(r["seeds"])
        lines.append(f"| {r['dataset']} | {r['backbone']} | " + " | ".join(cells) + f" | {r['fvgpt.gain_hm']:+.2f} | {seeds} |")
    return "\n".join(lines) + "\n"
