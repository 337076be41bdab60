"""heads: train FRG, FDC and BRG for every seed of one dataset x backbone, in one process, on the cached
features of each seed's run (no CLIP forward anywhere)."""

from __future__ import annotations

import torch

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
    configs = {seed: params.heads.for_run(dataset, backbone, seed) for seed in seeds}
    # Every seed is written into one fresh folder swapped in at the end: no seed of an earlier run survives.
    with atomic_dir(heads_runs_dir(dataset, backbone)) as out:
        total = sum(c.epochs for c in configs.values())
        with progress_bar(f"heads epochs ({len(seeds)} seeds)", total) as advance:
            for seed, config in configs.items():
                torch.manual_seed(seed)
                feats = RunFeatures(features_path(dataset, backbone, seed))
                print(f"{dataset}/{backbone}/seed{seed}:")
                model, logs = train_heads(
                    feats, [config], device, advance, on_epoch=lambda rows: print(_epoch_line(rows[0]))
                )
                n_params = sum(p.numel() for p in model.parameters())
                meta = {"dataset": dataset, "backbone": backbone, "seed": seed, "learnable_parameters": n_params}
                save_heads(out / f"seed{seed}", model, logs[0], meta)
    print(
        f"FVG-PT heads for {dataset}/{backbone}, seeds {seeds}: {n_params} learnable parameters each "
        f"({n_params / 1e6:.3f} M, D={feats.feat_full.shape[-1]}), {config.epochs} epochs on {device}"
    )
