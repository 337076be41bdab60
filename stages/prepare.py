"""prepare: a dataset's manifest and few-shot selection per seed."""

from __future__ import annotations

import warnings
from pathlib import Path

from pipeline.atomic import atomic_dir, write_json
from pipeline.datasets import DatasetLayoutError, dataset_root, is_synthetic, load_dataset
from pipeline.datasets.inputs import check_stage_inputs, dataset_inputs
from pipeline.datasets.synthetic import generate
from pipeline.datasets.validate import validate_dataset
from pipeline.manifest import build_manifest, missing_images, write_prepared
from pipeline.paths import prepare_inputs_path, prepared_dir

from ._common import progress_bar, start


def run(dataset: str, params_file: str = "params.yaml") -> Path:
    params = start(params_file)
    cfg = params.prepare.for_dataset(dataset)
    seeds = list(params.seeds)
    recorded = check_stage_inputs(prepare_inputs_path(dataset), params.prepare.inputs(dataset), seeds)
    out = prepared_dir(dataset)
    with atomic_dir(out) as tmp:
        if is_synthetic(dataset):
            spec = cfg.synthetic
            n = (spec.train_per_class + spec.val_per_class + spec.test_per_class) * spec.n_shapes * spec.n_colours
            with progress_bar("synthetic images", n) as advance:
                generate(tmp / "data", spec, progress=lambda k, total: advance(k))
            root = out / "data"  # where it will live after the rename
            data = load_dataset(dataset, tmp / "data")
            data.root = root
        else:
            root = dataset_root(dataset, cfg.data_root, cfg.roots.get(dataset))
            data = load_dataset(dataset, root)
            missing = missing_images(data)
            if missing:
                raise DatasetLayoutError(
                    f"{dataset}: {len(missing)} images listed in the split are missing under {root}, e.g. "
                    + ", ".join(missing[:5])
                )
        validate_dataset(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df, classes = build_manifest(data, cfg.shots, seeds)
        for w in caught:
            print(f"warning: {w.message}")
        write_prepared(tmp, df, classes)
        # A changed file outside the repository changes this folder, so every stage after prepare re-runs.
        # The fingerprint DVC tracked when the inputs stage wrote one (no second walk of the folder).
        fingerprint = recorded["inputs"] if recorded else dataset_inputs(dataset, cfg.data_root, cfg.roots.get(dataset))
        write_json(tmp / "inputs.json", fingerprint)
    n_base, n_new = len(classes["base"]), len(classes["new"])
    print(f"prepared {dataset}: {len(df)} rows, {n_base} base + {n_new} new classes, seeds {seeds} -> {out}")
    return out
