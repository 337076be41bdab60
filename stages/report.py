"""report: every run's metrics in the paper's table layout (CSV, Markdown) plus figures, under reports/."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from PIL import Image

from pipeline.atomic import atomic_path, write_text
from pipeline.images import load_rgb
from pipeline.manifest import read_prepared
from pipeline.masks.store import MaskStore
from pipeline.paths import heads_dir, masks_path, metrics_path, prepared_dir, results_dir
from pipeline.report import figures
from pipeline.report.tables import average_over_datasets, base_to_new, collect, markdown
from pipeline.views import foreground

from ._common import start


def _examples(dataset: str, seed: int, n: int):
    prepared = read_prepared(prepared_dir(dataset))
    store = MaskStore(masks_path(dataset))
    rows = prepared.fewshot_train(seed).drop_duplicates("label").head(n)
    out = []
    for path, name in zip(rows.impath, rows.classname):
        img = np.asarray(load_rgb(prepared.root / path))
        m = np.array(Image.fromarray(store.mask(path)).resize(img.shape[1::-1], Image.NEAREST))
        x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)
        fg = foreground(x, torch.from_numpy(m), "black", (0, 0, 0), (1, 1, 1)).permute(1, 2, 0).numpy()
        out.append((img, m, fg, name))
    return out


def run(params_file: str = "params.yaml") -> None:
    params = start(params_file)
    datasets, backbones, seeds = list(params.datasets), list(params.backbones), list(params.seeds)
    runs = collect(metrics_path, datasets, backbones, seeds)
    if runs.empty:
        raise FileNotFoundError("no metrics under reports/metrics: run the evaluate stage first (`dvc repro`)")
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    table = base_to_new(runs)
    full = pd.concat([table, average_over_datasets(runs)], ignore_index=True) if len(datasets) > 1 else table
    with atomic_path(out / "runs.csv") as tmp:
        runs.to_csv(tmp, index=False)
    with atomic_path(out / "base_to_new.csv") as tmp:
        full.to_csv(tmp, index=False)
    write_text(out / "base_to_new.md", markdown(full))
    figures.accuracy_bars(table, out / "accuracy.png")
    figures.shift_index(runs, out / "shift_index.png")
    hists = {}
    logs = {}
    for b in backbones:
        h = [np.asarray(hist) for hist in _r_hists(datasets[0], b, seeds)]
        if h:
            hists[b] = np.sum(h, axis=0)
        log = heads_dir(datasets[0], b, seeds[0]) / "train_log.csv"
        if log.is_file():
            logs[f"{b} seed{seeds[0]}"] = pd.read_csv(log)
    figures.gate_scores(runs, hists, out / "gates.png")
    figures.training_curves(logs, out / "heads_training.png")
    figures.example_views(_examples(datasets[0], seeds[0], params.report.examples), out / "examples.png")
    print(markdown(full))
    print(f"report written to {out}/")


def _r_hists(dataset: str, backbone: str, seeds):
    import json

    p = metrics_path(dataset, backbone)
    by_seed = json.loads(p.read_text()) if p.is_file() else {}
    for s in seeds:
        if f"seed{s}" in by_seed:
            yield by_seed[f"seed{s}"].get("gate.r_hist", [0] * 10)
