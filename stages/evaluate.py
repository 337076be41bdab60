"""evaluate: base / new / HM for CLIP, the backbone and backbone + FVG-PT, for every backbone x seed of one
dataset: one DVC metrics file per backbone, every seed in it."""

from __future__ import annotations

from pipeline.atomic import atomic_dir, write_json
from pipeline.features.run_features import RunFeatures
from pipeline.heads.evaluate import evaluate, evaluate_transfer, transfer_lines
from pipeline.heads.io import load_heads
from pipeline.paths import (
    cross_features_path,
    cross_heads_dir,
    cross_metrics_path,
    features_path,
    heads_dir,
    metrics_dir,
)

from ._common import start


def run(dataset: str, params_file: str = "params.yaml") -> None:
    params = start(params_file)  # checks the whole params file; evaluation itself has no settings
    with atomic_dir(metrics_dir(dataset)) as out:
        for backbone in params.backbones:
            metrics = {}
            for seed in params.seeds:
                feats = RunFeatures(features_path(dataset, backbone, seed))
                model = load_heads(heads_dir(dataset, backbone, seed), feats.feat_full.shape[-1], feats.logit_scale)
                metrics[f"seed{seed}"] = run_metrics = evaluate(model, feats)[0]
                print(f"{dataset}/{backbone}/seed{seed}:")
                for name in ("clip", "backbone", "fvgpt"):
                    print(
                        f"  {name:9s} base {run_metrics[f'{name}.base']:6.2f}  new {run_metrics[f'{name}.new']:6.2f}"
                        f"  hm {run_metrics[f'{name}.hm']:6.2f}"
                    )
            write_json(out / f"{backbone}.json", metrics)


def cross(source: str, target: str, params_file: str = "params.yaml") -> None:
    """Cross-dataset: the heads tuned on `source` applied zero-shot to `target`'s test split, every class
    through `cross_dataset.target_branch` (the new branch, PC with BRG, by default)."""
    params = start(params_file)
    branch = params.cross_dataset.target_branch
    metrics: dict[str, dict] = {}
    for backbone in params.backbones:
        metrics[backbone] = {}
        for seed in params.seeds:
            feats = RunFeatures(cross_features_path(source, target, backbone, seed))
            heads = cross_heads_dir(source) / backbone / f"seed{seed}"
            model = load_heads(heads, feats.test_feat.shape[-1], feats.logit_scale)
            metrics[backbone][f"seed{seed}"] = evaluate_transfer(model, feats, branch)[0]
    write_json(cross_metrics_path(source, target), metrics)
    print(transfer_lines(source, target, metrics))
