"""Training FVG-PT heads on cached features: the authors' recipe, epoch e on cached view e mod V."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..features.dump import FeatureDump
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


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf: the weights after it are garbage."""


def _check_loss(logs: list[list[dict]], dump: FeatureDump, n: int) -> None:
    bad = [k for k, log in enumerate(logs) if not math.isfinite(log[-1]["loss"])]
    if bad:
        epoch = logs[bad[0]][-1]["epoch"]
        raise NonFiniteLossError(
            f"{dump.path}: the heads' loss is {logs[bad[0]][-1]['loss']} at epoch {epoch} ({len(bad)} of {len(logs)} "
            f"configurations, {n} training images); lower heads.lr, or check the features (re-run the dump stage)")


def train_heads(dump: FeatureDump, configs: Sequence[HeadsConfig], device: torch.device | str = "cpu",
                advance: Callable[[int], None] | None = None) -> tuple[FVGPTHeads, list[list[dict]]]:
    """Train K configs of one structure together. Returns the heads and, per member, one log row per epoch."""
    device = torch.device(device)
    c0 = configs[0]
    model = FVGPTHeads(configs, dump.feat_full.shape[-1], dump.logit_scale).to(device)
    feat_full, feat_fg = dump.feat_full.to(device), dump.feat_fg.to(device)
    feat_clip, area, labels = dump.train_clip_full.to(device), dump.area.to(device), dump.train_label.to(device)
    base = torch.tensor(dump.base, device=device)
    g, g_clip = dump.text_backbone[base.cpu()].to(device), dump.text_clip[base.cpu()].to(device)
    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    subsets = [shot_subset(dump.train_label, c.shot_fraction, gen) for c, gen in zip(configs, gens)]
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
            idx = order[:, start:start + c0.batch_size]
            loss, parts = model.losses(feat_full[v][idx], feat_fg[v][idx], feat_clip[v][idx], area[v][idx], labels[idx], g, g_clip)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for key, val in parts.items():
                sums[key] = sums.get(key, 0) + val * idx.shape[1]
        for k in range(len(configs)):
            logs[k].append({"epoch": epoch + 1, "lr": lr, "view": v, **{key: float(val[k]) / n for key, val in sums.items()}})
        _check_loss(logs, dump, n)
        if advance:
            advance(1)
    return model.eval(), logs
