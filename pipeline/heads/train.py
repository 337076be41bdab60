"""Training FVG-PT heads on cached features: the authors' recipe, epoch e on cached view e mod V."""

from __future__ import annotations

import math
from dataclasses import dataclass
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


def _check_loss(logs: list[list[dict]], where: str, n: int) -> None:
    bad = [k for k, log in enumerate(logs) if not math.isfinite(log[-1]["loss"])]
    if bad:
        epoch = logs[bad[0]][-1]["epoch"]
        raise NonFiniteLossError(
            f"{where}: the heads' loss is {logs[bad[0]][-1]['loss']} at epoch {epoch} ({len(bad)} of {len(logs)} "
            f"configurations, {n} training images); lower heads.lr, or check the features (re-run the features stage)"
        )


@dataclass
class _Members:
    """What every source of K members' training batches holds: [F, N] labels of F files, `which` [K] (member k's
    file), per member [K, C_base, D] class features, and the files' names for errors."""

    labels: torch.Tensor
    which: torch.Tensor
    g: torch.Tensor
    g_clip: torch.Tensor
    where: str


@dataclass
class MemberFeatures(_Members):
    """The training tensors of K members drawn from F feature files held in memory: per file [F, V, N, D]
    features and [F, V, N] areas. Members sharing a file share its tensors (no copy per member)."""

    feat_full: torch.Tensor
    feat_fg: torch.Tensor
    feat_clip: torch.Tensor
    feat_new: torch.Tensor | None  # the new-class branch's full-view features where they differ (MMRL), else None
    area: torch.Tensor

    def batch(self, v: int, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """View v of each member's rows idx [K, B]: full, foreground and CLIP features [K, B, D], area, labels, and
        the new-class branch's full-view features (the full ones when they are the same)."""
        f = self.which.view(-1, 1)
        full = self.feat_full[f, v, idx]
        new = full if self.feat_new is None else self.feat_new[f, v, idx]
        return full, self.feat_fg[f, v, idx], self.feat_clip[f, v, idx], self.area[f, v, idx], self.labels[f, idx], new


@dataclass
class StreamedMemberFeatures(_Members):
    """What `MemberFeatures` gives, read from streamed feature files batch by batch: each file reads the rows its
    members need once per batch (so memory does not grow with the files' size), in the same float32 values."""

    files: list[RunFeatures]  # distinct files, `which` [K] picks member k's

    def batch(self, v: int, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        k, b = idx.shape
        out: dict[str, torch.Tensor] = {}
        for i, f in enumerate(self.files):
            members = (self.which == i).nonzero().flatten()
            rows, inverse = idx[members].flatten().cpu().unique(return_inverse=True)
            inverse = inverse.to(idx.device)
            for key, value in f.train_rows(v, rows).items():
                value = value.to(idx.device)  # read on the file's device
                if key not in out:
                    out[key] = value.new_empty((k, b, *value.shape[1:]))
                out[key][members] = value[inverse].view(len(members), b, *value.shape[1:])
        labels = self.labels[self.which.view(-1, 1), idx]
        return out["full"], out["fg"], out["clip"], out["area"], labels, out["new"]


def member_features(files: Sequence[RunFeatures], device: torch.device) -> MemberFeatures | StreamedMemberFeatures:
    """`files[k]` is member k's feature file (the same object for members that share one). The files must agree
    in views, training images, width, base classes and in having a second image feature (MMRL), as the seeds of
    one dataset x backbone do; and in being streamed or held in memory."""
    distinct = list(dict.fromkeys(files))
    if len({f.layout for f in distinct}) > 1:
        raise ValueError(
            "feature files trained together must have the same views, training images, width, base classes and "
            "storage (streamed or in memory): "
            + ", ".join(f"{f.path} {(f.views, f.n_train, f.width)}{' streamed' * f.streamed}" for f in distinct)
        )
    base = torch.tensor(distinct[0].base)
    which = torch.tensor([distinct.index(f) for f in files], device=device)
    g = torch.stack([f.text_backbone[base] for f in distinct]).to(device)[which]
    g_clip = torch.stack([f.text_clip[base] for f in distinct]).to(device)[which]
    labels = torch.stack([f.train_label for f in distinct]).to(device)
    where = ", ".join(str(f.path) for f in distinct)
    if distinct[0].streamed:
        return StreamedMemberFeatures(labels, which, g, g_clip, where, files=distinct)

    def stacked(name: str) -> torch.Tensor:
        return torch.stack([getattr(f, name) for f in distinct]).to(device)

    return MemberFeatures(
        feat_full=stacked("feat_full"),
        feat_fg=stacked("feat_fg"),
        feat_clip=stacked("train_clip_full"),
        feat_new=stacked("feat_full_new") if any(f.rep_weight for f in distinct) else None,
        area=stacked("area"),
        labels=labels,
        which=which,
        g=g,
        g_clip=g_clip,
        where=where,
    )


class MomentumSGD:
    """SGD with momentum and L2 weight decay, the same arithmetic as torch.optim.SGD(lr, momentum,
    weight_decay) on CPU tensors, operation for operation (tests/test_heads.py checks the weights bit for bit).

    Not torch's class because its first call imports torch._dynamo (about 1.8 s): more than a heads stage
    spends training, paid by every ablation's processes.
    """

    def __init__(self, params: list[torch.Tensor], momentum: float, weight_decay: float, lr: float = 0.0) -> None:
        self.params, self.momentum, self.weight_decay, self.lr = params, momentum, weight_decay, lr
        self.buffers: list[torch.Tensor | None] = [None] * len(params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            grad = p.grad.add(p, alpha=self.weight_decay) if self.weight_decay else p.grad
            if self.momentum:
                if self.buffers[i] is None:
                    self.buffers[i] = torch.clone(grad).detach()
                else:
                    self.buffers[i].mul_(self.momentum).add_(grad)
                grad = self.buffers[i]
            p.add_(grad, alpha=-self.lr)


def train_heads(
    feats: RunFeatures | Sequence[RunFeatures],
    configs: Sequence[HeadsConfig],
    device: torch.device | str = "cpu",
    advance: Callable[[int], None] | None = None,
    on_epoch: Callable[[list[dict]], None] | None = None,
    epoch_readings: Callable[[FVGPTHeads], list[dict]] | None = None,
) -> tuple[FVGPTHeads, list[list[dict]]]:
    """Train K configs of one structure together, on one feature file or on one file per config (e.g. the seeds
    of a dataset x backbone, each with its own tuned backbone). Returns the heads and, per member, one log row
    per epoch; member k's weights and log equal those of training configs[k] alone on its file.

    `advance(1)` follows each epoch (a progress bar); `on_epoch(rows)` gets that epoch's log row of each member,
    in `configs` order, as soon as it is made, so a caller can print losses while training runs.
    `epoch_readings(model)`, if given, returns one dict per member after each epoch, added to its log row (e.g.
    test accuracy and shift index for a trend plot: read, never used to choose anything); it draws no random
    numbers, so the weights are the same with or without it.
    """
    device = torch.device(device)
    files = [feats] * len(configs) if isinstance(feats, RunFeatures) else list(feats)
    if len(files) != len(configs):
        raise ValueError(f"{len(files)} feature files for {len(configs)} configurations: give one, or one each")
    data = member_features(files, device)
    c0 = configs[0]
    model = FVGPTHeads(configs, files[0].width, files[0].logit_scale, files[0].rep_weight > 0).to(device)
    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    subsets = [shot_subset(f.train_label, c.shot_fraction, gen) for f, c, gen in zip(files, configs, gens)]
    n = len(subsets[0])
    opt = MomentumSGD(list(model.parameters()), c0.momentum, c0.weight_decay)
    logs: list[list[dict]] = [[] for _ in configs]
    views = files[0].views
    for epoch in range(c0.epochs):
        lr = epoch_lr(epoch, c0.lr, c0.epochs, c0.warmup_epochs, c0.warmup_lr)
        opt.lr = lr
        v = epoch % views
        order = torch.stack([s[torch.randperm(n, generator=gen)] for s, gen in zip(subsets, gens)]).to(device)
        sums: dict[str, torch.Tensor] = {}
        for start in range(0, n, c0.batch_size):
            idx = order[:, start : start + c0.batch_size]
            f_full, f_fg, f_clip, area, y, f_new = data.batch(v, idx)
            loss, parts = model.losses(f_full, f_fg, f_clip, area, y, data.g, data.g_clip, f_new)
            opt.zero_grad()
            loss.backward()
            opt.step()
            for key, val in parts.items():
                sums[key] = sums.get(key, 0) + val * idx.shape[1]
        readings = epoch_readings(model) if epoch_readings else [{} for _ in configs]
        for k in range(len(configs)):
            logs[k].append(
                {
                    "epoch": epoch + 1,
                    "lr": lr,
                    "view": v,
                    **{key: float(val[k]) / n for key, val in sums.items()},
                    **readings[k],
                }
            )
        if on_epoch:
            on_epoch([log[-1] for log in logs])  # before the loss check, so a NaN epoch is shown too
        _check_loss(logs, data.where, n)
        if advance:
            advance(1)
    return model.eval(), logs


def train_runs(
    files: Sequence[RunFeatures],
    configs: Sequence[HeadsConfig],
    device: torch.device | str = "cpu",
    advance: Callable[[int], None] | None = None,
    on_epoch: Callable[[list[int], list[dict]], None] | None = None,
    epoch_readings: Callable[[list[RunFeatures]], Callable[[FVGPTHeads], list[dict]]] | None = None,
) -> list[tuple[FVGPTHeads, list[dict]]]:
    """Train run k = (files[k], configs[k]) for every k, e.g. every backbone x seed of one dataset, as few
    stacked trainings as can hold them: runs share one when their configs share a structure and their files a
    shape, base classes and logit scale. Returns each run's single-member heads and log, in order; each equals
    what training the run alone gives.

    `advance(1)` follows each epoch of each stack; `on_epoch(runs, rows)` gets the run indices of a stack and
    that epoch's log row of each; `epoch_readings(stack_files)`, if given, makes the reader `train_heads` calls
    after each epoch of that stack (one dict per member, into its log row).
    """
    if len(files) != len(configs):
        raise ValueError(f"{len(files)} feature files for {len(configs)} configurations: give one each")
    stacks: dict[tuple, list[int]] = {}
    for k, (f, cfg) in enumerate(zip(files, configs)):
        stacks.setdefault(_stack_key(f, cfg), []).append(k)
    out: list = [None] * len(files)
    for members in stacks.values():
        report = (lambda rows, members=members: on_epoch(members, rows)) if on_epoch else None
        stack_files = [files[k] for k in members]
        read = epoch_readings(stack_files) if epoch_readings else None
        model, logs = train_heads(stack_files, [configs[k] for k in members], device, advance, report, read)
        for i, k in enumerate(members):
            out[k] = (model.member(i), logs[i])
    return out


def stacked_epochs(files: Sequence[RunFeatures], configs: Sequence[HeadsConfig]) -> int:
    """The epochs `train_runs` trains in all (a progress bar's total)."""
    return sum({_stack_key(f, cfg): cfg.epochs for f, cfg in zip(files, configs)}.values())


def _stack_key(f: RunFeatures, cfg: HeadsConfig) -> tuple:
    return (cfg.structure, f.layout, f.logit_scale)
