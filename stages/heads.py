"""heads: train FRG, FDC and BRG for every seed of one dataset x backbone, stacked in one process, each seed on
the cached features of its own run (no CLIP forward anywhere)."""

from __future__ import annotations

from pipeline.atomic import atomic_dir
from pipeline.device import pick_device
from pipeline.features.run_features import RunFeatures
from pipeline.heads.io import save_heads
from pipeline.heads.train import train_heads
from pipeline.paths import features_path, heads_runs_dir

from ._common import progress_bar, start


def _epoch_line(row: dict) -> str:
    return (
        f"  epoch {row['epoch']:>2}  loss {row['loss']:.4f}  ce {row['fdc_ce']:.4f}  bce {row['frg_bce']:.4f}  "
        f"dist {row['fdc_dist']:.4f}  pc {row['pc_ce']:.4f}/{row['pc_kl']:.4f}  "
        f"r {row['r']:.3f}  b {row['b']:.3f}  r*=1 {row['r_star']:.3f}"
    )


def run(dataset: str, backbone: str, params_file: str = "params.yaml") -> None:
    params = start(params_file)
    device = pick_device(params.runtime.device)
    seeds = list(params.seeds)
    configs = [params.heads.for_run(dataset, backbone, seed) for seed in seeds]
    files = [RunFeatures(features_path(dataset, backbone, seed)) for seed in seeds]
    # Every seed is written into one fresh folder swapped in at the end: no seed of an earlier run survives.
    with atomic_dir(heads_runs_dir(dataset, backbone)) as out:
        # The seeds train as one stack, each member on its own run's features: the same weights as one by one,
        # in about the time of one (the steps are small; their overhead, not their arithmetic, is the cost).
        with progress_bar(f"heads epochs ({len(seeds)} seeds stacked)", configs[0].epochs) as advance:
            model, logs = train_heads(files, configs, device, advance, on_epoch=lambda rows: _print_epoch(seeds, rows))
        for k, seed in enumerate(seeds):
            single = model.member(k)
            n_params = sum(p.numel() for p in single.parameters())
            meta = {"dataset": dataset, "backbone": backbone, "seed": seed, "learnable_parameters": n_params}
            save_heads(out / f"seed{seed}", single, logs[k], meta)
    print(
        f"FVG-PT heads for {dataset}/{backbone}, seeds {seeds}: {n_params} learnable parameters each "
        f"({n_params / 1e6:.3f} M, D={files[0].feat_full.shape[-1]}), {configs[0].epochs} epochs on {device}"
    )


def _print_epoch(seeds: list[int], rows: list[dict]) -> None:
    for seed, row in zip(seeds, rows):
        print(f"  seed {seed}" + _epoch_line(row)[1:])
