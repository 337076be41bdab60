"""Training FVG-PT heads on cached features: the authors' recipe, epoch e on cached view e mod V."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..features.run_features import RunFeatures
from ..schedule import epoch_lr
from .config import HeadsConfig
from .model import FVGPTHeads


def shot_subset(labels: torch.Tensor, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """Indices keeping ceil(fraction * n_c) random images of each class (all of them at 1.0)."""
    if fraction >= 1.0:
        return torch.arange(len(labels))
    keep = []
    for c in labels.unique(sorted=True).tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        keep.append(idx[: max(1, math.ceil(fraction * len(idx)))])
    return torch.cat(keep).sort().values


def stack_groups(configs: Sequence[HeadsConfig]) -> list[list[int]]:
    """Indices of `configs` grouped by structure, in order of first appearance: each group trains as one stack."""
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(configs):
        groups.setdefault(cfg.structure, []).append(i)
    return list(groups.values())


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf: the weights after it are garbage."""


def _check_loss(logs: list[list[dict]], feats: RunFeatures, n: int) -> None:
    bad = [k for k, log in enumerate(logs) if not math.isfinite(log[-1]["loss"])]
    if bad:
        epoch = logs[bad[0]][-1]["epoch"]
        raise NonFiniteLossError(
            f"{feats.path}: the heads' loss is {logs[bad[0]][-1]['loss']} at epoch {epoch} ({len(bad)} of {len(logs)} "
            f"configurations, {n} training images); lower heads.lr, or check the features (re-run the features stage)"
        )


def train_heads(
    feats: RunFeatures,
    configs: Sequence[HeadsConfig],
    device: torch.device | str = "cpu",
    advance: Callable[[int], None] | None = None,
    on_epoch: Callable[[list[dict]], None] | None = None,
) -> tuple[FVGPTHeads, list[list[dict]]]:
    """Train K configs of one structure together. Returns the heads and, per member, one log row per epoch.

    `advance(1)` follows each epoch (a progress bar); `on_epoch(rows)` gets that epoch's log row of each member,
    in `configs` order, as soon as it is made, so a caller can print losses while training runs.
    """
    device = torch.device(device)
    c0 = configs[0]
    model = FVGPTHeads(configs, feats.feat_full.shape[-1], feats.logit_scale).to(device)
    feat_full, feat_fg = feats.feat_full.to(device), feats.feat_fg.to(device)
    feat_clip, area, labels = feats.train_clip_full.to(device), feats.area.to(device), feats.train_label.to(device)
    base = torch.tensor(feats.base, device=device)
    g, g_clip = feats.text_backbone[base.cpu()].to(device), feats.text_clip[base.cpu()].to(device)
    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    subsets = [shot_subset(feats.train_label, c.shot_fraction, gen) for c, gen in zip(configs, gens)]
    n = len(subsets[0])
    opt = torch.optim.SGD(model.parameters(), lr=c0.lr, momentum=c0.momentum, weight_decay=c0.weight_decay)
    logs: list[list[dict]] = [[] for _ in configs]
    views = feat_full.shape[0]
    for epoch in range(c0.epochs):
        lr = epoch_lr(epoch, c0.lr, c0.epochs, c0.warmup_epochs, c0.warmup_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        v = epoch % views
        order = torch.stack([s[torch.randperm(n, generator=gen)] for s, gen in zip(subsets, gens)]).to(device)
        sums: dict[str, torch.Tensor] = {}
        for start in range(0, n, c0.batch_size):
            idx = order[:, start : start + c0.batch_size]
            loss, parts = model.losses(
                feat_full[v][idx], feat_fg[v][idx], feat_clip[v][idx], area[v][idx], labels[idx], g, g_clip
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for key, val in parts.items():
                sums[key] = sums.get(key, 0) + val * idx.shape[1]
        for k in range(len(configs)):
            logs[k].append(
                {"epoch": epoch + 1, "lr": lr, "view": v, **{key: float(val[k]) / n for key, val in sums.items()}}
            )
        if on_epoch:
            on_epoch([log[-1] for log in logs])  # before the loss check, so a NaN epoch is shown too
        _check_loss(logs, feats, n)
        if advance:
            advance(1)
    return model.eval(), logs
