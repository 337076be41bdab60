"""The paper's table layouts from per-run metrics files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
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


def base_to_new_and_average(runs: pd.DataFrame) -> pd.DataFrame:
    """`base_to_new`, followed by `average_over_datasets` when there are several datasets."""
    table = base_to_new(runs)
    if runs["dataset"].nunique() < 2:
        return table
    return pd.concat([table, average_over_datasets(runs)], ignore_index=True)


def seed_stats(runs: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Mean and std over seeds of metrics that are not accuracies (no HM to recompute: shift index, gate scores),
    per dataset and backbone, then an "average" row per backbone when there are several datasets, taken the way
    `average_over_datasets` takes it: per seed over the datasets, then over seeds."""
    cols = [c for c in cols if c in runs]
    if not cols:
        return runs.groupby(["dataset", "backbone"], sort=False).size().rename("seeds").reset_index()
    table = average_runs(runs, ["dataset", "backbone"], cols, systems=()).reset_index()
    if runs["dataset"].nunique() < 2:
        return table
    per_seed = runs.groupby(["backbone", "seed"], sort=False)[cols].mean().reset_index()
    average = average_runs(per_seed, ["backbone"], cols, systems=()).reset_index()
    average.insert(0, "dataset", "average")
    return pd.concat([table, average], ignore_index=True)


def _accuracies(row: pd.Series, system: str) -> dict[str, float]:
    return {split: float(row[f"{system}.{split}"]) for split in SPLITS}


def _summary_entry(row: pd.Series) -> dict:
    fvgpt, backbone = _accuracies(row, "fvgpt"), _accuracies(row, "backbone")
    return {
        "gain": {split: fvgpt[split] - backbone[split] for split in SPLITS},
        "fvgpt": fvgpt,
        "backbone": backbone,
        "clip": _accuracies(row, "clip"),
        "seeds": int(row["seeds"]),
    }


def summary(runs: pd.DataFrame) -> dict:
    """The headline numbers, nested for DVC metrics: {dataset: {backbone: {gain, fvgpt, backbone, clip, seeds,
    shift_index}}} (shift_index: the foreground shift index D_fg on base test images, mean over seeds),
    plus {"average": {backbone: ...}} when there are several datasets. Each system's base/new/HM is the mean over
    seeds (HM of the means, as the tables); the gain is + FVG-PT minus the backbone. Full precision: round for
    display only."""
    out: dict[str, dict] = {}
    for _, row in base_to_new_and_average(runs).iterrows():
        out.setdefault(row["dataset"], {})[row["backbone"]] = _summary_entry(row)
    shift = [f"shift.{system}.base" for system in ("backbone", "fvgpt")]
    if set(shift) <= set(runs.columns):  # the paper's mechanism number next to its accuracies
        for _, row in seed_stats(runs, shift).iterrows():
            out[row["dataset"]][row["backbone"]]["shift_index"] = {
                "backbone": float(row[shift[0]]),
                "fvgpt": float(row[shift[1]]),
            }
    share = [f"attention.{system}" for system in SYSTEMS]
    if set(share) <= set(runs.columns):  # where each model looks: Grad-CAM mass inside the mask
        for _, row in seed_stats(runs, share).iterrows():
            values = {system: float(row[f"attention.{system}"]) for system in SYSTEMS}
            if not any(np.isnan(v) for v in values.values()):
                out[row["dataset"]][row["backbone"]]["foreground_share"] = values
    return out


def attention_table(runs: pd.DataFrame) -> str:
    """Markdown: per dataset x backbone, the share of Grad-CAM mass inside the foreground mask of CLIP, the
    backbone and + FVG-PT, mean ± std over seeds (the attention stage's runs only)."""
    cols = [f"attention.{system}" for system in SYSTEMS]
    if not set(cols) <= set(runs.columns):
        return "No attention maps (the attention stage writes reports/attention/<dataset>.json).\n"
    stats = seed_stats(runs.dropna(subset=cols), cols)
    lines = ["| dataset | backbone | CLIP | backbone | + FVG-PT |", "|---|---|---|---|---|"]
    for _, row in stats.iterrows():
        cells = []
        for col in cols:
            std = row.get(col + "_std")
            spread = not pd.isna(std) and row.get("seeds", 0) >= 2 and std > 0
            cells.append(f"{row[col]:.3f} ± {std:.3f}" if spread else f"{row[col]:.3f}")
        lines.append(f"| {row['dataset']} | {row['backbone']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nShare of each map's mass inside the foreground mask, for the true class.\n"


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


# How Table 1 names the backbones of this pipeline; any other backbone keeps its own name.
BACKBONE_NAMES = {
    "zsclip": "zero-shot CLIP",
    "coop": "CoOp",
    "kgcoop": "KgCoOp",
    "promptsrc": "PromptSRC",
    "mmrl": "MMRL",
}
TABLE1_NOTE = (
    "CLIP is zero-shot CLIP, listed once per dataset when its numbers are the same for every backbone. "
    "A value without ± did not vary over seeds, or comes from one seed."
)


def _table1_row(row: pd.Series, system: str, method: str) -> dict:
    out = {"dataset": row["dataset"], "method": method, "backbone": row["backbone"], "system": system}
    for split in SPLITS:
        out[split] = row[f"{system}.{split}"]
        out[f"{split}_std"] = row[f"{system}.{split}_std"]
    out["seeds"] = int(row["seeds"])
    return out


def _clip_is_shared(block: pd.DataFrame) -> bool:
    """Whether CLIP's averaged numbers are the same for every backbone of a dataset (one zero-shot model, the
    same seeds), so that Table 1 can list CLIP once."""
    cols = [f"clip.{split}{suffix}" for split in SPLITS for suffix in ("", "_std")] + ["seeds"]
    values = block[cols].to_numpy(dtype=float)
    return bool(np.allclose(values, values[0], rtol=0.0, atol=1e-9))


def _table1_block(block: pd.DataFrame) -> list[dict]:
    shared = _clip_is_shared(block)
    rows = [{**_table1_row(block.iloc[0], "clip", "CLIP"), "backbone": "all"}] if shared else []
    for _, row in block.iterrows():
        name = BACKBONE_NAMES.get(row["backbone"], row["backbone"])
        if not shared:
            rows.append(_table1_row(row, "clip", f"CLIP ({name})"))
        rows += [_table1_row(row, "backbone", name), _table1_row(row, "fvgpt", "+FVG-PT")]
    return rows


def table1(runs: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1: per dataset (the average over datasets first, as in the paper, when there are
    several), the rows CLIP, then each backbone followed by its + FVG-PT, with Base / New / HM as mean and std over
    seeds (`base_to_new`'s numbers: HM of the means)."""
    table = base_to_new_and_average(runs)
    order = ["average"] + [d for d in table["dataset"].unique() if d != "average"]
    rows = []
    for dataset in order:
        block = table[table["dataset"] == dataset]
        if len(block):
            rows += _table1_block(block)
    return pd.DataFrame(rows)


def _table1_cell(row: pd.Series, split: str) -> str:
    std = row[f"{split}_std"]
    if row["seeds"] < 2 or std == 0:  # deterministic (CLIP) or one seed: a "± 0.00" would only add noise
        return f"{row[split]:.2f}"
    return f"{row[split]:.2f} ± {std:.2f}"


def _seeds_text(seeds: pd.Series) -> str:
    low, high = int(seeds.min()), int(seeds.max())
    if low != high:
        return f"{low} to {high} seeds"
    return f"{high} seed" if high == 1 else f"{high} seeds"


def _table1_title(dataset: str, block: pd.DataFrame, n_datasets: int) -> str:
    name = f"Average over {n_datasets} datasets" if dataset == "average" else dataset
    return f"**{name}** (mean ± std over {_seeds_text(block['seeds'])})"


def table1_markdown(rows: pd.DataFrame) -> str:
    """`table1`'s rows as Markdown, one table per dataset, then the averaging convention."""
    n_datasets = rows.loc[rows["dataset"] != "average", "dataset"].nunique()
    parts = []
    for dataset, block in rows.groupby("dataset", sort=False):
        lines = [_table1_title(dataset, block, n_datasets), "", "| Method | Base | New | HM |", "|---|---|---|---|"]
        for _, row in block.iterrows():
            lines.append(f"| {row['method']} | " + " | ".join(_table1_cell(row, s) for s in SPLITS) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts + [CONVENTION + " " + TABLE1_NOTE]) + "\n"


def results_markdown(runs: pd.DataFrame) -> str:
    """The report's main Markdown (reports/results/table1.md) and the README's results block: one function, so
    the README shows exactly the report's table."""
    return table1_markdown(table1(runs))
