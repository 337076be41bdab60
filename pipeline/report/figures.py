"""Figures of the report: accuracy, shift index, gate scores, training curves, cross-dataset transfer.

Every figure covers every dataset, backbone and seed: a grid with one row per dataset (and
an "average" row when there are several), error bars for the std over seeds, and a title saying what is averaged.
Each function returns its Figure (closed, but its axes can still be inspected) so a test can check the layout.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

SYSTEM_COLOURS = {"clip": "#9e9e9e", "backbone": "#4c72b0", "fvgpt": "#dd8452"}
SYSTEM_LABELS = {"clip": "CLIP", "backbone": "the column's backbone", "fvgpt": "+FVG-PT"}
B_COLOURS = ("#55a868", "#c44e52")  # the BRG weight b on base, on new test images
SPLIT_LABELS = {"base": "Base", "new": "New", "hm": "HM"}
TRAINING_TERMS = ("loss", "fdc_ce", "frg_bce", "fdc_dist", "pc_ce", "pc_kl", "r", "b")


def _save(fig: Figure, path: Path) -> Figure:
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return fig


def _finish(fig: Figure, title: str, handles: list, path: Path, legend_size: int = 8) -> Figure:
    """The figure's title (what it shows), one legend row at the bottom, then the PNG."""
    fig.suptitle(title, fontsize=10, wrap=True)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=legend_size)
    return _save(fig, path)


def _grid(rows: int, cols: int, panel_size: tuple[float, float], **kwargs) -> tuple[Figure, np.ndarray]:
    """A rows x cols grid whose figure grows with it, with fixed margins in inches for the figure title (top) and
    legend (bottom). Fixed margins, not a layout engine: constrained or tight layout doubles the drawing time of
    a grid of 11 datasets x 4 backbones."""
    width, height = panel_size
    top, bottom, left, right = 0.9, 0.8, 0.7, 0.2  # inches
    fig_w, fig_h = width * cols + left + right, height * rows + top + bottom
    margins = {"left": left / fig_w, "right": 1 - right / fig_w, "top": 1 - top / fig_h, "bottom": bottom / fig_h}
    return plt.subplots(
        rows,
        cols,
        figsize=(fig_w, fig_h),
        squeeze=False,
        gridspec_kw={**margins, "hspace": 0.6, "wspace": 0.3},
        **kwargs,
    )


def _ordered(values: pd.Series) -> list[str]:
    """Distinct values in order of appearance, "average" last."""
    seen = list(dict.fromkeys(values))
    return [v for v in seen if v != "average"] + [v for v in seen if v == "average"]


def _seeds_text(seeds: pd.Series) -> str:
    low, high = int(seeds.min()), int(seeds.max())
    return f"{high} seed{'s' if high != 1 else ''}" if low == high else f"{low} to {high} seeds"


def _average_note(datasets: list[str]) -> str:
    return "; average row: over datasets" if "average" in datasets else ""


def _names(kind: str, values: list) -> str:
    """The values named when there are few ("datasets a, b"), counted when there are many ("11 datasets")."""
    return f"{kind} {', '.join(map(str, values))}" if len(values) <= 4 else f"{len(values)} {kind}"


def _no_runs(ax) -> None:
    ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes, fontsize=8, color="#777777")
    ax.set_xticks([])


def _grouped_bars(ax, series: list[tuple[str, pd.Series | list]], stds: list, labels: list[str]) -> None:
    """Side by side at each x label, one bar per (colour, means) series, with the std as error bars. One bar and
    one errorbar call per panel: a call per series makes a grid of 11 datasets x 4 backbones much slower."""
    width = 0.8 / len(series)
    x = np.arange(len(labels))
    xs = np.concatenate([x + (i - (len(series) - 1) / 2) * width for i in range(len(series))])
    means = np.concatenate([np.asarray(m, dtype=float) for _, m in series])
    ax.bar(xs, means, width, color=[colour for colour, m in series for _ in range(len(m))])
    errors = np.concatenate([np.asarray(s, dtype=float) for s in stds])
    ax.errorbar(xs, means, yerr=errors, fmt="none", ecolor="black", elinewidth=0.7, capsize=2)
    ax.set_xticks(x, labels, fontsize=7)


def _accuracy_panel(ax, row: pd.Series) -> None:
    series = [(c, [row[f"{s}.{split}"] for split in SPLIT_LABELS]) for s, c in SYSTEM_COLOURS.items()]
    stds = [[row[f"{s}.{split}_std"] for split in SPLIT_LABELS] for s in SYSTEM_COLOURS]
    _grouped_bars(ax, series, stds, list(SPLIT_LABELS.values()))


def _accuracy_floor(table: pd.DataFrame, columns: list[str]) -> float:
    """Where the shared y axis starts: the differences are a few points, so zoom in below the lowest bar (mean
    minus std) of `columns`."""
    lowest = min((table[c] - table[f"{c}_std"].fillna(0)).min() for c in columns)
    return float(max(0.0, np.floor((lowest - 5) / 10) * 10))


def accuracy_bars(table: pd.DataFrame, path: Path) -> Figure:
    """Base, new and HM of CLIP, the backbone and + FVG-PT, mean ± std over seeds: one row of panels per dataset
    (and the average over datasets), one column per backbone. `table` is `base_to_new_and_average`'s."""
    datasets, backbones = _ordered(table["dataset"]), list(dict.fromkeys(table["backbone"]))
    cells = table.set_index(["dataset", "backbone"])
    fig, axes = _grid(len(datasets), len(backbones), (2.6, 2.0))
    floor = _accuracy_floor(table, [f"{sys}.{sp}" for sys in SYSTEM_COLOURS for sp in SPLIT_LABELS])
    for i, dataset in enumerate(datasets):
        for j, backbone in enumerate(backbones):
            ax = axes[i][j]
            if (dataset, backbone) in cells.index:
                _accuracy_panel(ax, cells.loc[(dataset, backbone)])
            else:
                _no_runs(ax)
            ax.set_title(f"{dataset} / {backbone}", fontsize=8)
            ax.set_ylim(floor, 100)  # one scale for every panel, set on each: sharey costs O(panels²) here
        axes[i][0].set_ylabel("accuracy (%)", fontsize=8)
    title = (
        f"Base / New / HM accuracy, mean ± std over {_seeds_text(table['seeds'])} "
        f"(HM of the mean Base and New){_average_note(datasets)}"
    )
    return _finish(fig, title, [Patch(color=c, label=SYSTEM_LABELS[s]) for s, c in SYSTEM_COLOURS.items()], path)


def _shift_panel(ax, rows: pd.DataFrame, subset: str) -> None:
    """Per backbone, D_fg of the backbone and of + FVG-PT on one test subset."""
    cols = [f"shift.{system}.{subset}" for system in ("backbone", "fvgpt")]
    rows = rows.reindex(columns=cols + [c + "_std" for c in cols])  # + FVG-PT on new images can be missing
    series = [(SYSTEM_COLOURS[system], rows[col]) for system, col in zip(("backbone", "fvgpt"), cols)]
    _grouped_bars(ax, series, [rows[c + "_std"] for c in cols], list(rows.index))


def shift_index(shift: pd.DataFrame, path: Path) -> Figure | None:
    """D_fg = KL(p_full || p_fg), the backbone against + FVG-PT per backbone, mean ± std over seeds: one row per
    dataset (and the average over datasets), base test images left, new test images right. `shift` is
    `seed_stats` of the `shift.*` columns; None without them."""
    if "shift.backbone.base" not in shift:
        return None
    datasets, backbones = _ordered(shift["dataset"]), list(dict.fromkeys(shift["backbone"]))
    fig, axes = _grid(len(datasets), 2, (0.8 * len(backbones) + 1.0, 1.9))
    for i, dataset in enumerate(datasets):
        rows = shift[shift["dataset"] == dataset].set_index("backbone").reindex(backbones)
        for j, subset in enumerate(("base", "new")):
            _shift_panel(axes[i][j], rows, subset)
            axes[i][j].set_title(f"{dataset}: {subset} test images", fontsize=8)
        axes[i][0].set_ylabel("D_fg", fontsize=8)
    title = (
        f"Foreground shift index D_fg (lower: less reliant on background), mean ± std over "
        f"{_seeds_text(shift['seeds'])}{_average_note(datasets)}"
    )
    handles = [
        Patch(color=SYSTEM_COLOURS[s], label=label) for s, label in (("backbone", "backbone"), ("fvgpt", "+FVG-PT"))
    ]
    return _finish(fig, title, handles, path)


def _with_average_hist(r_hists: dict[tuple[str, str], np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
    """Each histogram as fractions of views, plus per backbone the mean over datasets (each dataset weighs the
    same, as in the tables' average row) when there are several."""
    fractions = {key: np.asarray(h, float) / max(float(np.sum(h)), 1.0) for key, h in r_hists.items()}
    if len({d for d, _ in fractions}) < 2:
        return fractions
    for backbone in dict.fromkeys(b for _, b in r_hists):
        fractions[("average", backbone)] = np.mean([h for (_, b), h in fractions.items() if b == backbone], axis=0)
    return fractions


def _r_panel(ax, fractions: dict[tuple[str, str], np.ndarray], dataset: str, colours: dict[str, str]) -> None:
    for (d, backbone), hist in fractions.items():
        if d == dataset:
            centres = (np.arange(len(hist)) + 0.5) / len(hist)
            ax.plot(centres, hist, marker="o", ms=2, lw=1, color=colours[backbone])
    ax.set_xlim(0, 1)


def _b_panel(ax, gates: pd.DataFrame, dataset: str, backbones: list[str]) -> None:
    cols = ["gate.b_base", "gate.b_new"]
    rows = gates[gates["dataset"] == dataset].set_index("backbone").reindex(backbones)
    rows = rows.reindex(columns=cols + [c + "_std" for c in cols])
    series = [(colour, rows[col]) for col, colour in zip(cols, B_COLOURS)]
    _grouped_bars(ax, series, [rows[c + "_std"] for c in cols], backbones)
    ax.set_ylim(0, 1)


def _backbone_colours(backbones: list[str]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {b: cycle[i % len(cycle)] for i, b in enumerate(backbones)}


def gate_scores(gates: pd.DataFrame, r_hists: dict[tuple[str, str], np.ndarray], path: Path) -> Figure:
    """Per dataset (and the average over datasets), left: the distribution of the trust score r on training views,
    one line per backbone, pooled over seeds; right: the mean BRG weight b on base and new test images per
    backbone, mean ± std over seeds. `gates` is `seed_stats` of the `gate.*` columns; `r_hists` maps (dataset,
    backbone) to the r histogram summed over seeds."""
    datasets = _ordered(gates["dataset"])
    backbones = list(dict.fromkeys(gates["backbone"]))
    colours = _backbone_colours(backbones)
    fractions = _with_average_hist(r_hists)
    fig, axes = _grid(len(datasets), 2, (3.4, 1.9))
    for i, dataset in enumerate(datasets):
        _r_panel(axes[i][0], fractions, dataset, colours)
        _b_panel(axes[i][1], gates, dataset, backbones)
        axes[i][0].set_title(f"{dataset}: FRG trust score r (training views)", fontsize=8)
        axes[i][1].set_title(f"{dataset}: BRG weight on CLIP, mean b", fontsize=8)
        axes[i][0].set_ylabel("fraction of views", fontsize=7)
    seeds = _seeds_text(gates["seeds"])
    title = f"Gate scores: r pooled over seeds, b mean ± std over {seeds}{_average_note(datasets)}"
    handles = [Patch(color=c, label=b) for b, c in colours.items()]
    handles += [Patch(color=c, label=f"b on {subset} test") for c, subset in zip(B_COLOURS, ("base", "new"))]
    return _finish(fig, title, handles, path, legend_size=7)


def _curve_panel(ax, runs: list[tuple[str, pd.DataFrame]], term: str, colours: dict[str, str]) -> None:
    """One line per run, drawn as one LineCollection: a Line2D per run makes a grid of 11 datasets x 4 backbones
    x 3 seeds several times slower to draw."""
    lines = LineCollection(
        [np.column_stack([run["epoch"], run[term]]) for _, run in runs],
        colors=[colours[backbone] for backbone, _ in runs],
        linewidths=0.8,
        alpha=0.8,
    )
    ax.add_collection(lines)
    ax.autoscale_view()


def _log_axes(logs: pd.DataFrame) -> tuple[list[str], list[str], list[int], dict[str, str]]:
    """A long-form log's datasets and backbones (in order of appearance), its seeds, and a colour per backbone."""
    backbones = list(dict.fromkeys(logs["backbone"]))
    return list(dict.fromkeys(logs["dataset"])), backbones, sorted(logs["seed"].unique()), _backbone_colours(backbones)


def training_curves(logs: pd.DataFrame, path: Path) -> Figure | None:
    """Each loss term and the mean gate scores per epoch: one row of panels per dataset, one column per term,
    one line per run (colour: backbone; one line per seed). `logs` is the long-form log (dataset, backbone, seed,
    epoch, terms) the report also writes as CSV; None when there is no log."""
    terms = [t for t in TRAINING_TERMS if t in logs]
    if logs.empty or not terms:
        return None
    datasets, backbones, seeds, colours = _log_axes(logs)
    fig, axes = _grid(len(datasets), len(terms), (2.0, 1.6))
    for i, dataset in enumerate(datasets):
        runs = [(b, run) for (b, _), run in logs[logs["dataset"] == dataset].groupby(["backbone", "seed"], sort=False)]
        for j, term in enumerate(terms):
            _curve_panel(axes[i][j], runs, term, colours)
            axes[i][j].set_title(f"{dataset}: {term}", fontsize=8)
        axes[i][0].set_ylabel("per epoch", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=7)
    title = (
        f"FVG-PT heads training: {_names('datasets', datasets)} (rows); {_names('backbones', backbones)} (colour); "
        f"{_names('seeds', seeds)} (one line each)"
    )
    return _finish(fig, title, [Patch(color=c, label=b) for b, c in colours.items()], path)


def cross_dataset_bars(table: pd.DataFrame, path: Path) -> Figure:
    """Table 2 as bars: one row of panels per source, one column per backbone; in each, the source, the average
    over targets and each target, with CLIP, the backbone and + FVG-PT, mean ± std over seeds. `table` is
    `pipeline.report.cross.table2`'s."""
    sources, backbones = list(dict.fromkeys(table["source"])), list(dict.fromkeys(table["backbone"]))
    fig, axes = _grid(len(sources), len(backbones), (max(2.6, 0.9 * table["dataset"].nunique()), 2.2))
    floor = _accuracy_floor(table, [f"{s}.acc" for s in SYSTEM_COLOURS])
    for i, source in enumerate(sources):
        for j, backbone in enumerate(backbones):
            ax = axes[i][j]
            rows = table[(table.source == source) & (table.backbone == backbone)]
            order = [source] + [d for d in rows.dataset if d != source and d.startswith("average")]
            order += [d for d in rows.dataset if d not in order]
            rows = rows.set_index("dataset").loc[order]
            series = [(c, rows[f"{s}.acc"]) for s, c in SYSTEM_COLOURS.items()]
            stds = [rows[f"{s}.acc_std"].fillna(0) for s in SYSTEM_COLOURS]
            labels = ["source" if d == source else ("target avg." if d.startswith("average") else d) for d in order]
            _grouped_bars(ax, series, stds, labels)
            ax.tick_params(axis="x", labelrotation=30)
            ax.set_title(f"tuned on {source} / {backbone}", fontsize=8)
            ax.set_ylim(floor, 100)
        axes[i][0].set_ylabel("accuracy (%)", fontsize=8)
    title = (
        f"Cross-dataset transfer: accuracy on the source (base branch) and zero-shot on each target (new branch), "
        f"mean ± std over {_seeds_text(table['seeds'])}"
    )
    return _finish(fig, title, [Patch(color=c, label=SYSTEM_LABELS[s]) for s, c in SYSTEM_COLOURS.items()], path)


TREND_TERMS = {"test.fvgpt.base": "base accuracy (%)", "test.shift.fvgpt.base": "shift index D_fg (base)"}
TREND_BACKBONE = {"test.fvgpt.base": "backbone.base", "test.shift.fvgpt.base": "shift.backbone.base"}
TUNING_TERMS = {"test.backbone.base": "base accuracy (%)", "test.shift.backbone.base": "shift index D_fg (base)"}


def _trend_panel(ax, per_epoch: pd.DataFrame, dataset: str, term: str, colours: dict[str, str]) -> None:
    """One line per backbone (mean over seeds) with its min-max band, from `per_epoch`, indexed by
    (dataset, backbone, epoch) with (term, mean|min|max) columns."""
    for backbone, colour in colours.items():
        if (dataset, backbone) not in per_epoch.index.droplevel(2):
            continue
        rows = per_epoch.loc[(dataset, backbone)][term]
        ax.plot(rows.index, rows["mean"], color=colour, linewidth=1.2)
        ax.fill_between(rows.index, rows["min"], rows["max"], color=colour, alpha=0.15)


def epoch_trends(
    logs: pd.DataFrame, runs: pd.DataFrame, path: Path, tuning: pd.DataFrame | None = None
) -> Figure | None:
    """Paper Fig. 5: per epoch, base test accuracy and the foreground shift index on base test images, mean over
    seeds (band: min to max), one row per dataset and one line per backbone. Left, while the backbone is tuned
    (`tuning`, from the class features kept after each epoch); right, while FVG-PT's heads train (`logs`), with
    the dashed line at the backbone's own final value, which FVG-PT starts from. Read on the test split for this
    figure only. None without readings."""
    panels = []  # (per-epoch statistics, term, title, x label)
    for frame, named, phase, xlabel in (
        (tuning, TUNING_TERMS, "backbone tuning", "tuning epoch"),
        (logs, TREND_TERMS, "FVG-PT heads", "heads epoch"),
    ):
        terms = [t for t in named if frame is not None and t in frame]
        if terms and not frame.empty:
            stats = frame.groupby(["dataset", "backbone", "epoch"], sort=False)[terms].agg(["mean", "min", "max"])
            panels += [(stats, t, f"{phase}: {named[t]}", xlabel) for t in terms]
    if logs.empty or not panels:
        return None
    datasets, backbones, seeds, colours = _log_axes(logs)
    fig, axes = _grid(len(datasets), len(panels), (2.6, 1.7))
    frozen_cols = [c for c in TREND_BACKBONE.values() if c in runs]
    frozen = runs.groupby(["dataset", "backbone"], sort=False)[frozen_cols].mean() if frozen_cols else None
    for i, dataset in enumerate(datasets):
        for j, (frame, term, title, xlabel) in enumerate(panels):
            ax = axes[i][j]
            _trend_panel(ax, frame, dataset, term, colours)
            key = TREND_BACKBONE.get(term)
            if key and frozen is not None and key in frozen:
                for backbone, colour in colours.items():
                    if (dataset, backbone) in frozen.index:
                        value = float(frozen.loc[(dataset, backbone), key])
                        ax.axhline(value, color=colour, linestyle="--", linewidth=0.8)
            ax.set_title(f"{dataset}: {title}", fontsize=7)
            if i == len(datasets) - 1:
                ax.set_xlabel(xlabel, fontsize=7)
    title = (
        f"Paper Fig. 5, read on the test split after each epoch: {_names('datasets', datasets)} (rows); "
        f"{_names('backbones', backbones)} (colour); mean over {_names('seeds', seeds)}, band min-max; "
        "dashed: the backbone's final value"
    )
    return _finish(fig, title, [Patch(color=c, label=b) for b, c in colours.items()], path)
