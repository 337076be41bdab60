"""Does a benchmark show the paper's regime? Table 1's qualitative pattern and how clear FVG-PT's gain is.

Table 1 of the paper: tuning lifts base accuracy above zero-shot CLIP and costs new-class accuracy, and
FVG-PT then lifts both. Per dataset and tuned backbone, over seeds:

- base: CLIP < backbone <= + FVG-PT
- new: backbone < CLIP and backbone < + FVG-PT
- HM: backbone < + FVG-PT
- a clear gain: + FVG-PT's HM gain exceeds `min_gain` points and `spread` standard deviations over seeds of the
  per-seed gain (paired: each seed's + FVG-PT against the same seed's backbone), with base accuracy not lower.

A backbone whose runs equal CLIP's on every seed (zero-shot CLIP) has nothing tuned and is left out.
"""

from __future__ import annotations

import pandas as pd

from .tables import SPLITS, average_runs

CHECKS = ("base", "new", "hm", "clear_gain")
CHECK_TEXT = {
    "base": "base: CLIP < backbone <= + FVG-PT",
    "new": "new: backbone < CLIP, backbone < + FVG-PT",
    "hm": "HM: backbone < + FVG-PT",
    "clear_gain": "HM gain > {min_gain:g} and > {spread:g} std over seeds, base not lower",
}
SYSTEM_COLUMNS = [f"{system}.{split}" for system in ("clip", "backbone", "fvgpt") for split in SPLITS]


def paired_gains(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with `gain.<split>` = + FVG-PT minus the backbone, per run (seed), for base, new and HM."""
    out = runs.copy()
    for split in SPLITS:
        out[f"gain.{split}"] = out[f"fvgpt.{split}"] - out[f"backbone.{split}"]
    return out


def tuned(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of backbones that differ from zero-shot CLIP on some seed (a tuned backbone)."""
    differs = (runs["backbone.base"] != runs["clip.base"]) | (runs["backbone.new"] != runs["clip.new"])
    keep = differs.groupby([runs["dataset"], runs["backbone"]]).transform("any")
    return runs[keep]


def regime(runs: pd.DataFrame, min_gain: float = 1.0, spread: float = 2.0, extra: list[str] = ()) -> pd.DataFrame:
    """Per dataset x tuned backbone: mean accuracies (HM of the means), the mean and std over seeds of the
    paired gains and of the `extra` columns, and one boolean column per check of the module docstring."""
    runs = tuned(paired_gains(runs))
    if runs.empty:
        return pd.DataFrame(columns=["dataset", "backbone", *CHECKS])
    gains = [f"gain.{split}" for split in SPLITS]
    table = average_runs(runs, ["dataset", "backbone"], SYSTEM_COLUMNS + gains + list(extra)).reset_index()

    def col(system: str, split: str) -> pd.Series:
        return table[f"{system}.{split}"]

    table["base"] = (col("clip", "base") < col("backbone", "base")) & (col("backbone", "base") <= col("fvgpt", "base"))
    table["new"] = (col("backbone", "new") < col("clip", "new")) & (col("backbone", "new") < col("fvgpt", "new"))
    table["hm"] = col("backbone", "hm") < col("fvgpt", "hm")
    # gain.hm is the gain of the HMs of the means (average_runs), as every table reports it; its spread is that
    # of the paired per-seed gains
    gain = table["gain.hm"]
    table["clear_gain"] = (gain > min_gain) & (gain > spread * table["gain.hm_std"]) & (table["gain.base"] >= 0)
    return table


def regime_markdown(table: pd.DataFrame, min_gain: float = 1.0, spread: float = 2.0) -> str:
    """One row per dataset x tuned backbone: the three accuracies, the gain with its std, and each check."""
    if table.empty:
        return "No tuned backbone in the runs: the pattern of Table 1 concerns tuned prompt backbones.\n"
    head = ["dataset", "backbone", "CLIP B / N", "backbone B / N", "+ FVG-PT B / N", "ΔHM ± std"]
    head += [CHECK_TEXT[c].format(min_gain=min_gain, spread=spread) for c in CHECKS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        pair = lambda system: f"{r[f'{system}.base']:.2f} / {r[f'{system}.new']:.2f}"  # noqa: E731
        cells = [r["dataset"], r["backbone"], pair("clip"), pair("backbone"), pair("fvgpt")]
        cells.append(f"{r['gain.hm']:+.2f} ± {r['gain.hm_std']:.2f}")
        cells += ["yes" if r[c] else "no" for c in CHECKS]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    note = (
        "The qualitative pattern of the paper's Table 1 on each tuned backbone (B: base, N: new accuracy, means "
        "over seeds). ± is the std over seeds of the paired per-seed HM gain."
    )
    return "\n".join(lines + ["", note]) + "\n"


def regime_summary(table: pd.DataFrame) -> dict:
    """{dataset: {backbone: {check: bool, "gain_std": {split: std}}}} for summary.json."""
    out: dict[str, dict] = {}
    for _, r in table.iterrows():
        entry = {c: bool(r[c]) for c in CHECKS}
        entry["gain_std"] = {split: float(r[f"gain.{split}_std"]) for split in SPLITS}
        out.setdefault(r["dataset"], {})[r["backbone"]] = entry
    return out


def with_pattern(head: dict, table: pd.DataFrame) -> dict:
    """The summary `head` ({dataset: {backbone: {...}}}) with, per tuned backbone of `regime`'s `table`,
    `gain_std` (the std over seeds of the paired gains) and `table1_pattern` (each check)."""
    for dataset, per_backbone in regime_summary(table).items():
        for backbone, checks in per_backbone.items():
            head[dataset][backbone]["gain_std"] = checks.pop("gain_std")
            head[dataset][backbone]["table1_pattern"] = checks
    return head
