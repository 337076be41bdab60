"""heads: train FRG, FDC and BRG for every backbone x seed of one dataset in one process, stacked, each run on
the cached features of its own tuned backbone (no CLIP forward anywhere), then evaluate them: base / new / HM
for CLIP, the backbone and backbone + FVG-PT, one DVC metrics file per backbone with every seed in it.

Training and evaluation share one process because both take seconds here: as two stages, an ablation paid a
second interpreter start and a second lock-file update for about a second of work."""

from __future__ import annotations

from itertools import product

from pipeline.atomic import atomic_dir, write_json
from pipeline.device import pick_device
from pipeline.features.run_features import RunFeatures, load_run_features
from pipeline.heads.evaluate import (
    EpochReadings,
    backbone_epoch_readings,
    evaluate,
    evaluate_transfer,
    transfer_lines,
)
from pipeline.heads.io import save_heads, write_long_logs
from pipeline.heads.train import stacked_epochs, train_runs
from pipeline.paths import (
    backbone_trend_path,
    cross_features_path,
    cross_heads_dir,
    cross_metrics_dir,
    features_path,
    heads_dataset_dir,
    metrics_dir,
    training_log_path,
)

from ._common import progress_bar, start


def _epoch_line(row: dict) -> str:
    return (
        f"epoch {row['epoch']:>2}  loss {row['loss']:.4f}  ce {row['fdc_ce']:.4f}  bce {row['frg_bce']:.4f}  "
        f"dist {row['fdc_dist']:.4f}  pc {row['pc_ce']:.4f}/{row['pc_kl']:.4f}  "
        f"r {row['r']:.3f}  b {row['b']:.3f}  r*=1 {row['r_star']:.3f}"
    )


def _train(
    runs: list[tuple[str, int]], files: list[RunFeatures], configs: list, device, label: str, readings=None
) -> list:
    """Every run's (model, log), trained stacked: every run is a member of as few stacks as its configs allow
    (usually one), the same weights as training them one by one in about the time of one, since the steps are
    small and their overhead is the cost. Each epoch's losses print as they happen."""
    width = max(len(f"{b} seed {s}") for b, s in runs)

    def print_epoch(members: list[int], rows: list[dict]) -> None:
        for k, row in zip(members, rows):
            print(f"  {runs[k][0]} seed {runs[k][1]}".ljust(width + 4) + _epoch_line(row))

    with progress_bar(f"heads epochs {label}({len(runs)} runs stacked)", stacked_epochs(files, configs)) as advance:
        return train_runs(files, configs, device, advance, print_epoch, readings)


def run(dataset: str, params_file: str = "params.yaml") -> None:
    params = start(params_file)
    device = pick_device(params.runtime.device)
    runs = list(product(params.backbones, params.seeds))
    configs = [params.heads.for_run(dataset, backbone, seed) for backbone, seed in runs]
    memory = params.runtime.features_memory_mb
    # on the CPU: training copies what it needs to the device (the stacked tensors, or each batch's streamed rows)
    files = [load_run_features(features_path(dataset, backbone, seed), "cpu", memory) for backbone, seed in runs]

    # Fresh folders swapped in at the end (opened first, so a read-only output fails before training): no run of
    # an earlier repro survives, and a failed evaluation leaves the previous heads and metrics whole.
    with atomic_dir(heads_dataset_dir(dataset)) as heads_out, atomic_dir(metrics_dir(dataset)) as metrics_out:
        # Test accuracy and shift index after each epoch, for the trend figure (paper Fig. 5)
        trained = _train(runs, files, configs, device, "", lambda stack: EpochReadings(stack, device))
        metrics: dict[str, dict] = {backbone: {} for backbone in params.backbones}
        for (backbone, seed), (model, log), feats in zip(runs, trained, files):
            n_params = sum(p.numel() for p in model.parameters())
            meta = {"dataset": dataset, "backbone": backbone, "seed": seed, "learnable_parameters": n_params}
            save_heads(heads_out / backbone / f"seed{seed}", model, log, meta)
            metrics[backbone][f"seed{seed}"] = run_metrics = evaluate(model, feats)[0]
            print(f"{dataset}/{backbone}/seed{seed}:")
            for name in ("clip", "backbone", "fvgpt"):
                print(
                    f"  {name:9s} base {run_metrics[f'{name}.base']:6.2f}  new {run_metrics[f'{name}.new']:6.2f}"
                    f"  hm {run_metrics[f'{name}.hm']:6.2f}"
                )
        for backbone, per_seed in metrics.items():
            write_json(metrics_out / f"{backbone}.json", per_seed)
    labels = [{"dataset": dataset, "backbone": b, "seed": s, "run": f"{b} seed{s}"} for b, s in runs]
    write_long_logs(training_log_path(dataset), [(label, log) for label, (_, log) in zip(labels, trained)])
    tuning = [backbone_epoch_readings(f, c.tau_d) for f, c in zip(files, configs)]
    write_long_logs(backbone_trend_path(dataset), list(zip(labels, tuning)))
    print(
        f"FVG-PT heads for {dataset}: backbones {list(params.backbones)} x seeds {list(params.seeds)}, "
        f"{n_params} learnable parameters each ({n_params / 1e6:.3f} M, D={files[0].width}), on {device}"
    )


def cross(source: str, params_file: str = "params.yaml") -> None:
    """Cross-dataset: the heads of every backbone x seed trained on the source (every class a base class), then
    tested on its test split through the base branch (FDC) and, zero-shot, on every target's test split through
    `cross_dataset.target_branch` (the new branch, PC with BRG, by default)."""
    params = start(params_file)
    device = pick_device(params.runtime.device)
    runs = list(product(params.backbones, params.seeds))
    cross = params.cross_dataset
    configs = [cross.heads_config(params.heads.for_run(source, backbone, seed)) for backbone, seed in runs]
    memory = params.runtime.features_memory_mb
    files = [
        load_run_features(cross_features_path(source, source, backbone, seed), "cpu", memory) for backbone, seed in runs
    ]

    tested = {source: "base", **{target: cross.target_branch for target in cross.targets}}
    metrics = {dataset: {backbone: {} for backbone in params.backbones} for dataset in tested}
    with atomic_dir(cross_heads_dir(source)) as heads_out, atomic_dir(cross_metrics_dir(source)) as metrics_out:
        trained = _train(runs, files, configs, device, f"on {source} ")
        for (backbone, seed), (model, log) in zip(runs, trained):
            meta = {"source": source, "backbone": backbone, "seed": seed, "protocol": "cross_dataset"}
            save_heads(heads_out / backbone / f"seed{seed}", model, log, meta)
        for dataset, branch in tested.items():
            for (backbone, seed), (model, _) in zip(runs, trained):
                feats = load_run_features(cross_features_path(source, dataset, backbone, seed), "cpu", memory)
                metrics[dataset][backbone][f"seed{seed}"] = evaluate_transfer(model, feats, branch)[0]
            write_json(metrics_out / f"{dataset}.json", metrics[dataset])
            print(transfer_lines(source, dataset, metrics[dataset]))
