"""report: every base-to-new run's metrics in the paper's table layout (Markdown, CSV), the headline summary
for DVC metrics, the long-form training log for DVC plots, and figures, under reports/. `cross`: Table 2 of
one cross-dataset source."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.atomic import atomic_path, write_json, write_text
from pipeline.paths import (
    REPORTS,
    attention_metrics_path,
    backbone_trend_path,
    cross_figure_path,
    cross_metrics_dir,
    cross_metrics_path,
    cross_results_dir,
    cross_summary_path,
    figures_dir,
    metrics_path,
    plots_dir,
    results_dir,
    summary_path,
    training_log_path,
)
from pipeline.report import figures
from pipeline.report.cross import collect_cross, cross_summary, table2, table2_markdown
from pipeline.report.regime import regime, regime_markdown, with_pattern
from pipeline.report.tables import (
    attention_table,
    base_to_new_and_average,
    collect,
    markdown,
    results_markdown,
    seed_stats,
    summary,
    table1,
)

from ._common import start

RUN_COLUMNS = ["dataset", "backbone", "seed", "run"]


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_tables(runs: pd.DataFrame) -> None:
    """summary.json, Table 1 (Markdown and CSV), every run, and the compact base-to-new table with its gains."""
    out = results_dir()
    pattern = regime(runs)
    write_json(summary_path(), with_pattern(summary(runs), pattern))
    write_text(out / "regime.md", regime_markdown(pattern))
    write_text(out / "table1.md", results_markdown(runs))
    _write_csv(out / "table1.csv", table1(runs))
    _write_csv(out / "runs.csv", runs)  # what `python -m pipeline.report.readme` rebuilds the README table from
    compact = base_to_new_and_average(runs)
    _write_csv(out / "base_to_new.csv", compact)
    write_text(out / "base_to_new.md", markdown(compact))
    write_text(out / "attention.md", attention_table(runs))


def with_attention(runs: pd.DataFrame, datasets) -> pd.DataFrame:
    """`runs` with each run's foreground share of Grad-CAM mass (all test images) as `attention.<system>`
    columns, from the attention stage's file of each dataset (a run it skipped keeps NaN)."""
    rows = []
    for dataset in datasets:
        path = attention_metrics_path(dataset)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run the attention stage first (`dvc repro attention`)")
        for backbone, per_seed in json.loads(path.read_text()).items():
            for seed, shares in per_seed.items():
                row = {"dataset": dataset, "backbone": backbone, "seed": int(seed.removeprefix("seed"))}
                for system in ("clip", "backbone", "fvgpt"):
                    value = shares.get(f"{system}.all")
                    row[f"attention.{system}"] = np.nan if value is None else float(value)
                rows.append(row)
    if not rows:
        return runs
    return runs.merge(pd.DataFrame(rows), on=["dataset", "backbone", "seed"], how="left")


def training_logs(datasets, backbones, seeds, path_of=training_log_path) -> pd.DataFrame:
    """Every run's heads training log in long form: dataset, backbone, seed, run ("coop seed1"), then the log's
    own columns (epoch, loss terms, mean gate scores); from each dataset's file the heads stage writes
    (`path_of=backbone_trend_path`: the backbones' per-tuning-epoch readings instead)."""
    frames = [pd.read_csv(path) for path in map(path_of, datasets) if path.is_file() and path.stat().st_size > 1]
    if not frames:
        return pd.DataFrame(columns=RUN_COLUMNS)
    logs = pd.concat(frames, ignore_index=True)
    return logs[logs.backbone.isin(list(backbones)) & logs.seed.isin(list(seeds))].reset_index(drop=True)


def r_histograms(datasets, backbones, seeds) -> dict[tuple[str, str], np.ndarray]:
    """Per (dataset, backbone), the histogram of the trust score r on training views, summed over seeds. The
    histogram is a list in the metrics file, which `collect` leaves out."""
    hists = {}
    for dataset, backbone in product(datasets, backbones):
        path = metrics_path(dataset, backbone)
        by_seed = json.loads(path.read_text()) if path.is_file() else {}
        found = [np.asarray(by_seed[f"seed{s}"].get("gate.r_hist", [0] * 10)) for s in seeds if f"seed{s}" in by_seed]
        if found:
            hists[(dataset, backbone)] = np.sum(found, axis=0)
    return hists


def write_figures(runs: pd.DataFrame, logs: pd.DataFrame, r_hists: dict, tuning: pd.DataFrame | None = None) -> None:
    figures.accuracy_bars(base_to_new_and_average(runs), figures_dir() / "accuracy.png")
    figures.shift_index(
        seed_stats(runs, [c for c in runs if c.startswith("shift.")]), figures_dir() / "shift_index.png"
    )
    figures.gate_scores(seed_stats(runs, ["gate.b_base", "gate.b_new"]), r_hists, figures_dir() / "gates.png")
    figures.training_curves(logs, figures_dir() / "heads_training.png")
    figures.epoch_trends(logs, runs, figures_dir() / "epoch_trends.png", tuning)


def _no_runs() -> None:
    """`base2new: []` (a params file for the cross-dataset protocol only): outputs that say so, as DVC needs them."""
    write_json(summary_path(), {})
    write_text(results_dir() / "table1.md", "No base-to-new runs: `base2new` in params.yaml is empty.\n")
    _write_csv(plots_dir() / "heads_training.csv", pd.DataFrame(columns=RUN_COLUMNS))
    _write_csv(plots_dir() / "backbone_tuning.csv", pd.DataFrame(columns=RUN_COLUMNS))
    figures_dir().mkdir(parents=True, exist_ok=True)
    print("no base-to-new runs (base2new: []): wrote an empty summary")


def run(params_file: str = "params.yaml") -> None:
    params = start(params_file)
    datasets, backbones, seeds = list(params.base2new), list(params.backbones), list(params.seeds)
    if not datasets:
        _no_runs()
        return
    runs = collect(metrics_path, datasets, backbones, seeds)
    if runs.empty:
        raise FileNotFoundError("no metrics under reports/metrics: run the heads stage first (`dvc repro`)")
    runs = with_attention(runs, datasets)
    write_tables(runs)
    logs = training_logs(datasets, backbones, seeds)
    _write_csv(plots_dir() / "heads_training.csv", logs)
    tuning = training_logs(datasets, backbones, seeds, backbone_trend_path)
    _write_csv(plots_dir() / "backbone_tuning.csv", tuning)
    write_figures(runs, logs, r_histograms(datasets, backbones, seeds), tuning)
    print(results_markdown(runs))
    print(f"report written to {REPORTS}/ (summary.json, results/, figures/, plots/)")


def cross(source: str, params_file: str = "params.yaml") -> None:
    """Cross-dataset: Table 2 of the runs tuned on `source` (Markdown, CSV, figure) and its summary metric."""
    params = start(params_file)
    targets = params.cross_dataset.targets
    runs = collect_cross(cross_metrics_path, [source], targets, params.backbones, params.seeds)
    if runs.empty:
        raise FileNotFoundError(
            f"no cross-dataset metrics under {cross_metrics_dir(source)}: run the cross_heads stage first (`dvc repro`)"
        )
    table = table2(runs)
    write_json(cross_summary_path(source), cross_summary(table)[source])
    text = table2_markdown(table)
    out = cross_results_dir(source)
    write_text(out / "table2.md", text)
    with atomic_path(out / "table2.csv") as tmp:
        table.round(4).to_csv(tmp, index=False)
    with atomic_path(out / "runs.csv") as tmp:
        runs.to_csv(tmp, index=False)
    figures.cross_dataset_bars(table, cross_figure_path(source))
    print(text)
    print(f"Table 2 for {source} written to {out}/ and {cross_figure_path(source)}")
