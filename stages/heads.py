"""heads: train FRG, FDC and BRG on one run's feature file (cached tensors; no CLIP forward anywhere)."""

from __future__ import annotations

import torch

from pipeline.atomic import check_writable
from pipeline.device import pick_device
from pipeline.features.run_features import RunFeatures
from pipeline.heads.io import save_heads
from pipeline.heads.train import train_heads
from pipeline.paths import features_path, heads_dir

from ._common import progress_bar, start


def run(dataset: str, backbone: str, seed: int, params_file: str = "params.yaml") -> None:
    params = start(params_file)
    device = pick_device(params.runtime.device)
    config = params.heads.for_run(dataset, backbone, seed)
    check_writable(heads_dir(dataset, backbone, seed))  # before training, not after
    torch.manual_seed(seed)
    feats = RunFeatures(features_path(dataset, backbone, seed))
    with progress_bar("heads epochs", config.epochs) as advance:
        model, logs = train_heads(feats, [config], device, advance)
    n_params = sum(p.numel() for name, p in model.named_parameters())
    log = logs[0]
    for row in log:
        print(
            f"  epoch {row['epoch']:>2}  loss {row['loss']:.4f}  ce {row['fdc_ce']:.4f}  bce {row['frg_bce']:.4f}  "
            f"dist {row['fdc_dist']:.4f}  pc {row['pc_ce']:.4f}/{row['pc_kl']:.4f}  "
            f"r {row['r']:.3f}  b {row['b']:.3f}  "
            f"r*=1 {row['r_star']:.3f}"
        )
    print(
        f"FVG-PT heads for {dataset}/{backbone}/seed{seed}: {n_params} learnable parameters "
        f"({n_params / 1e6:.3f} M, D={feats.feat_full.shape[-1]}), {config.epochs} epochs on {device}"
    )
    save_heads(
        heads_dir(dataset, backbone, seed),
        model,
        log,
        {"dataset": dataset, "backbone": backbone, "seed": seed, "learnable_parameters": n_params},
    )
