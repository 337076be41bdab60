"""report: every run's metrics in the paper's table layout (Markdown, CSV), the headline summary for DVC metrics,
the long-form training log for DVC plots, and figures, under reports/."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.atomic import atomic_path, write_json, write_text
from pipeline.paths import (
    REPORTS,
    figures_dir,
    heads_dir,
    masks_path,
    metrics_path,
    plots_dir,
    prepared_dir,
    results_dir,
    summary_path,
)
from pipeline.report import figures
from pipeline.report.tables import (
    base_to_new_and_average,
    collect,
    markdown,
    results_markdown,
    seed_stats,
    summary,
    table1,
)

from ._common import start

TRAIN_LOG = "train_log.csv"  # what the heads stage writes in heads_dir (pipeline.heads.io.LOG, which imports torch)
RUN_COLUMNS = ["dataset", "backbone", "seed", "run"]


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_tables(runs: pd.DataFrame) -> None:
    """summary.json, Table 1 (Markdown and CSV), every run, and the compact base-to-new table with its gains."""
    out = results_dir()
    write_json(summary_path(), summary(runs))
    write_text(out / "table1.md", results_markdown(runs))
    _write_csv(out / "table1.csv", table1(runs))
    _write_csv(out / "runs.csv", runs)  # what `python -m pipeline.report.readme` rebuilds the README table from
    compact = base_to_new_and_average(runs)
    _write_csv(out / "base_to_new.csv", compact)
    write_text(out / "base_to_new.md", markdown(compact))


def training_logs(datasets, backbones, seeds) -> pd.DataFrame:
    """Every run's heads training log in long form: dataset, backbone, seed, run ("coop seed1"), then the log's
    own columns (epoch, loss terms, mean gate scores)."""
    frames = []
    for dataset, backbone, seed in product(datasets, backbones, seeds):
        path = heads_dir(dataset, backbone, seed) / TRAIN_LOG
        if path.is_file():
            log = pd.read_csv(path)
            labels = {"dataset": dataset, "backbone": backbone, "seed": seed, "run": f"{backbone} seed{seed}"}
            frames.append(pd.concat([pd.DataFrame(labels, index=log.index), log], axis=1))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RUN_COLUMNS)


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


def _examples(dataset: str, seed: int, n: int):
    """A few-shot training image of each of the first `n` classes, its mask and its foreground view with a black
    fill (the pixels outside the mask zeroed, which is what `pipeline.views.foreground` does with fill "black"),
    in numpy: importing torch would double the time of the report, which every ablation runs."""
    from PIL import Image

    from pipeline.images import load_rgb
    from pipeline.manifest import read_prepared
    from pipeline.masks.store import MaskStore

    prepared = read_prepared(prepared_dir(dataset))
    store = MaskStore(masks_path(dataset))
    rows = prepared.fewshot_train(seed).drop_duplicates("label").head(n)
    out = []
    for path, name in zip(rows.impath, rows.classname):
        img = np.asarray(load_rgb(prepared.root / path))
        m = np.array(Image.fromarray(store.mask(path)).resize(img.shape[1::-1], Image.NEAREST))
        out.append((img, m, black_foreground_view(img, m), name))
    return out


def black_foreground_view(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 image and [H, W] mask -> the foreground view in [0, 1] with a black fill."""
    return img.astype(np.float32) / 255.0 * (mask[..., None] > 0)


def examples_title(dataset: str, seed: int, n_datasets: int, n_classes: int) -> str:
    shown = f"{dataset} only (1 of {n_datasets} datasets)" if n_datasets > 1 else dataset
    return (
        f"{shown}, seed {seed}: a few-shot training image of each of the first {n_classes} classes, "
        "its mask and its foreground view"
    )


def write_figures(runs: pd.DataFrame, logs: pd.DataFrame, r_hists: dict, examples: list, title: str) -> None:
    figures.accuracy_bars(base_to_new_and_average(runs), figures_dir() / "accuracy.png")
    figures.shift_index(
        seed_stats(runs, [c for c in runs if c.startswith("shift.")]), figures_dir() / "shift_index.png"
    )
    figures.gate_scores(seed_stats(runs, ["gate.b_base", "gate.b_new"]), r_hists, figures_dir() / "gates.png")
    figures.training_curves(logs, figures_dir() / "heads_training.png")
    figures.example_views(examples, figures_dir() / "examples.png", title)


def run(params_file: str = "params.yaml") -> None:
    params = start(params_file)
    datasets, backbones, seeds = list(params.datasets), list(params.backbones), list(params.seeds)
    runs = collect(metrics_path, datasets, backbones, seeds)
    if runs.empty:
        raise FileNotFoundError("no metrics under reports/metrics: run the evaluate stage first (`dvc repro`)")
    write_tables(runs)
    logs = training_logs(datasets, backbones, seeds)
    _write_csv(plots_dir() / "heads_training.csv", logs)
    examples = _examples(datasets[0], seeds[0], params.report.examples)
    title = examples_title(datasets[0], seeds[0], len(datasets), len(examples))
    write_figures(runs, logs, r_histograms(datasets, backbones, seeds), examples, title)
    print(results_markdown(runs))
    print(f"report written to {REPORTS}/ (summary.json, results/, figures/, plots/)")
