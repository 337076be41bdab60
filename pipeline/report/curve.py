"""A curve over DVC experiments: how FVG-PT's gain, the accuracies and where the models look change with one
params key (e.g. the benchmark's background-shortcut strength, `prepare.synthetic.spurious`).

Each point is one experiment's `reports/results/runs.csv` (every run of the report stage) and the key's
effective value for the dataset in that experiment's params.yaml; `stages/curve.py` finds them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import _merge
from .figures import _backbone_colours, _save
from .regime import CHECKS, regime
from .tables import SPLITS

PER_DATASET_SECTIONS = ("prepare", "masks")  # sections with `overrides: {dataset: {...}}` (pipeline/config.py)
SHARES = [f"attention.{system}" for system in ("clip", "backbone", "fvgpt")]
SHIFT = ["shift.backbone.base", "shift.fvgpt.base"]


def effective_value(params: dict, key: str, dataset: str):
    """The value of dotted `key` for `dataset` in a params file's contents: for `prepare.*` and `masks.*`, with
    the dataset's `<section>.overrides.<dataset>` merged in first, with the stages' own merge. KeyError if absent."""
    section, _, rest = key.partition(".")
    node = params.get(section, {})
    if section in PER_DATASET_SECTIONS and isinstance(node, dict):
        node = _merge({k: v for k, v in node.items() if k != "overrides"}, node.get("overrides", {}).get(dataset, {}))
    for part in rest.split(".") if rest else []:
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def curve_table(points: list[tuple[object, str, pd.DataFrame]], dataset: str) -> pd.DataFrame:
    """One row per (value, tuned backbone): its experiment, mean accuracies over seeds (HM of the means), the
    paired + FVG-PT gains with their std over seeds, the Table 1 pattern checks, and, where the runs have them,
    the foreground share of Grad-CAM mass and the foreground shift index. `points` are (value, experiment, runs)."""
    rows = []
    for value, experiment, runs in points:
        runs = runs[runs["dataset"] == dataset]
        if runs.empty:
            continue
        table = regime(runs, extra=[c for c in SHARES + SHIFT if c in runs])
        table.insert(0, "experiment", experiment)
        table.insert(0, "value", value)
        rows.append(table)
    if not rows:
        return pd.DataFrame()
    return pd.concat(rows, ignore_index=True).sort_values(["backbone", "value"], kind="stable").reset_index(drop=True)


def curve_markdown(table: pd.DataFrame, key: str, dataset: str) -> str:
    head = ["backbone", key, "experiment", "CLIP B / N", "backbone B / N / HM", "+ FVG-PT B / N / HM", "ΔHM ± std"]
    has_share = set(SHARES) <= set(table.columns)
    head += ["fg share: backbone → + FVG-PT"] if has_share else []
    head += ["Table 1 pattern"]
    lines = [f"**{dataset}**: one DVC experiment per value of `{key}` (means over seeds)", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        three = lambda s: " / ".join(f"{r[f'{s}.{split}']:.2f}" for split in SPLITS)  # noqa: E731
        cells = [r["backbone"], f"{r['value']}", r["experiment"], f"{r['clip.base']:.2f} / {r['clip.new']:.2f}"]
        cells += [three("backbone"), three("fvgpt"), f"{r['gain.hm']:+.2f} ± {r['gain.hm_std']:.2f}"]
        if has_share:
            cells.append(f"{r['attention.backbone']:.3f} → {r['attention.fvgpt']:.3f}")
        cells.append(", ".join(c for c in CHECKS if r[c]) or "none")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    note = (
        "ΔHM is + FVG-PT's HM minus the backbone's; ± the std over seeds of the paired per-seed gain. The pattern "
        "column names the checks that hold (reports/results/regime.md): base (CLIP < backbone <= + FVG-PT), new "
        "(backbone < CLIP and < + FVG-PT), hm (backbone < + FVG-PT), clear_gain (ΔHM > 1 and > 2 std, base not lower)."
    )
    return "\n".join(lines + ["", note]) + "\n"


def curve_figure(table: pd.DataFrame, key: str, dataset: str, path: Path):
    """Left: + FVG-PT's HM gain ± std vs the value, per backbone. Middle: base and new accuracy of CLIP, each
    backbone and + FVG-PT. Right (when measured): the foreground share of Grad-CAM mass."""
    import matplotlib.pyplot as plt

    backbones = list(dict.fromkeys(table["backbone"]))
    colours = _backbone_colours(backbones)
    has_share = set(SHARES) <= set(table.columns)
    fig, axes = plt.subplots(1, 3 if has_share else 2, figsize=(14 if has_share else 9.5, 3.8), squeeze=False)
    gain_ax, acc_ax = axes[0, 0], axes[0, 1]
    for backbone in backbones:
        rows = table[table["backbone"] == backbone]
        x, colour = rows["value"].astype(float), colours[backbone]
        gain_ax.errorbar(
            x, rows["gain.hm"], yerr=rows["gain.hm_std"], marker="o", capsize=3, color=colour, label=backbone
        )
        for split, style in (("base", "-"), ("new", ":")):
            acc_ax.plot(
                x, rows[f"backbone.{split}"], style, marker="o", color=colour, alpha=0.5, label=f"{backbone} {split}"
            )
            acc_ax.plot(x, rows[f"fvgpt.{split}"], style, marker="s", color=colour, label=f"+ FVG-PT {split}")
        if has_share:
            axes[0, 2].plot(x, rows["attention.backbone"], marker="o", color=colour, alpha=0.5, label=backbone)
            axes[0, 2].plot(x, rows["attention.fvgpt"], marker="s", color=colour, label="+ FVG-PT")
    clip = table.drop_duplicates("value")
    for split, style in (("base", "-"), ("new", ":")):
        acc_ax.plot(clip["value"].astype(float), clip[f"clip.{split}"], style, color="black", label=f"CLIP {split}")
    gain_ax.axhline(0, color="grey", lw=0.8)
    gain_ax.set(title="+ FVG-PT HM gain (± std over seeds)", xlabel=key, ylabel="points")
    acc_ax.set(title="accuracy (%): backbone (o), + FVG-PT (s)", xlabel=key)
    if has_share:
        clip_share = clip["attention.clip"]
        axes[0, 2].plot(clip["value"].astype(float), clip_share, color="black", label="CLIP")
        axes[0, 2].set(title="Grad-CAM mass inside the mask", xlabel=key)
        axes[0, 2].legend(fontsize=7)
    gain_ax.legend(fontsize=7)
    acc_ax.legend(fontsize=6, ncol=2)
    fig.suptitle(f"{dataset}: FVG-PT vs {key}")
    fig.tight_layout()
    return _save(fig, path)
