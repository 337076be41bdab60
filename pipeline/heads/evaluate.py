"""Base / new / HM of zero-shot CLIP, the backbone and backbone + FVG-PT; shift index; gate statistics."""

from __future__ import annotations

import numpy as np
import torch

from ..features.run_features import RunFeatures
from .model import FVGPTHeads
from .signals import kl, log_probs


def harmonic_mean(base: float, new: float) -> float:
    """HM = 2 B N / (B + N) (Sec. 4.1)."""
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def _mean(total: float, count: int) -> float:
    return total / count if count else float("nan")


def _percent(correct: float, total: int) -> float:
    return 100.0 * correct / total if total else float("nan")  # 100 c / n: 77.6, where 100 (c / n) gives 77.60...01


def _local_labels(labels: torch.Tensor, classes: list[int], n_classes: int) -> torch.Tensor:
    lookup = torch.full((n_classes,), -1, dtype=torch.long)
    lookup[torch.tensor(classes, dtype=torch.long)] = torch.arange(len(classes))
    local = lookup.to(labels.device)[labels]
    if (local < 0).any():
        raise ValueError(f"test labels {sorted(set(labels[local < 0].tolist()))[:5]} are not in the subset's classes")
    return local


def shift_index(z_full: torch.Tensor, z_fg: torch.Tensor, tau: float) -> float:
    """The foreground shift index (Supp. A.1): D_fg = KL(p_full || p_fg) at tau_d, averaged over images."""
    return float(kl(log_probs(z_full, tau), log_probs(z_fg, tau)).mean())


def _kl_sum(z_full: torch.Tensor, z_fg: torch.Tensor, tau: float) -> float:
    """The sum over images of KL(p_full || p_fg) at tau (a block's share of the shift index)."""
    return float(kl(log_probs(z_full, tau), log_probs(z_fg, tau)).double().sum())


def _per_tau(z_full: torch.Tensor, z_fg: torch.Tensor, taus: list[float]) -> torch.Tensor:
    """[K] KL sums of one pair of logits at each member's tau_d, each distinct tau computed once."""
    sums = {tau: _kl_sum(z_full, z_fg, tau) for tau in set(taus)}
    return torch.tensor([sums[tau] for tau in taus])


def _member_kl(z_full: torch.Tensor, z_fg: torch.Tensor, taus: list[float]) -> torch.Tensor:
    """[K] KL sums of each member's logits [K, M, C] at its own tau_d."""
    return torch.tensor([_kl_sum(z_full[k], z_fg[k], tau) for k, tau in enumerate(taus)])


def _triple(base: float, new: float) -> dict:
    return {"base": base, "new": new, "hm": harmonic_mean(base, new)}


def _split(block: dict, feats: RunFeatures, device) -> tuple[dict, dict]:
    """A block of test images split into its base and its new images, each with its branch's image features
    (MMRL: fused on base classes, class token on new), labels local to the subset, and the subset's class
    features, on `device`."""
    out = {}
    for subset, classes in (("base", feats.base), ("new", feats.new)):
        mask = block["subset"] == (0 if subset == "base" else 1)
        cls = torch.tensor(classes)
        f, f_fg = (block["f"], block["f_fg"]) if subset == "base" else (block["f_new"], block["f_fg_new"])
        out[subset] = dict(
            f=f[mask].to(device),
            f_new=block["f_new"][mask].to(device),
            f_clip=block["clip"][mask].to(device),
            f_fg=f_fg[mask].to(device),
            has_fg=block["has_fg"][mask].to(device),
            y=_local_labels(block["label"][mask], classes, len(feats.classnames)).to(device),
            g=feats.text_backbone[cls].to(device),
            g_clip=feats.text_clip[cls].to(device),
        )
    return out["base"], out["new"]


@torch.no_grad()
def _test_subsets(feats: RunFeatures, device) -> tuple[dict, dict]:
    """Every base and every new test image at once (a file held in memory)."""
    return _split(next(feats.test_blocks(max(len(feats.test_label), 1))), feats, device)


class EpochReadings:
    """+ FVG-PT's base and new test accuracy and its foreground shift index on base test images, for a trend
    over training epochs (paper Fig. 5): `readings(model)` gives one dict per member of a stack whose member k
    runs on files[k]. Files in memory: all members in one batched pass (the test tensors stacked once);
    streamed files: block by block, in bounded memory. Read for the figure only, never to choose anything."""

    def __init__(self, files: list[RunFeatures], device="cpu") -> None:
        self.files, self.device = files, device
        self.subsets, self.stacked = [], None
        if any(f.streamed for f in files):
            return
        self.subsets = [_test_subsets(f, device) for f in files]
        shapes = {tuple(tuple(t.shape) for t in (*b.values(), *n.values())) for b, n in self.subsets}
        if len(shapes) == 1:  # one test split (the runs of one dataset): every member in one pass
            self.stacked = [
                {key: torch.stack([pair[i][key] for pair in self.subsets]) for key in self.subsets[0][i]}
                for i in (0, 1)
            ]

    @torch.no_grad()
    def __call__(self, model: FVGPTHeads) -> list[dict]:
        if self.stacked is not None:
            return self._read(model, *self.stacked, list(range(model.k)))
        if self.subsets:
            return [self._read(model, b, n, [k])[0] for k, (b, n) in enumerate(self.subsets)]
        return [self._read_blocks(model, f, k) for k, f in enumerate(self.files)]

    @staticmethod
    def _read(model: FVGPTHeads, b: dict, n: dict, members: list[int]) -> list[dict]:
        """The readings of `members`, from inputs stacked per member ([K, ...]) or shared by all ([...])."""
        base = model.base_logits(b["f"], b["g"])
        new = model.new_logits(n["f"], n["f_clip"], n["g"], n["g_clip"])[0]
        z_fg = model.base_logits(b["f_fg"], b["g"])
        stacked = b["f"].dim() == 3
        out = []
        for i, k in enumerate(members):
            pick = (lambda t, i=i: t[i]) if stacked else (lambda t: t)
            y_base, y_new = pick(b["y"]), pick(n["y"])
            row = {
                "test.fvgpt.base": _percent(int((base[k].argmax(-1) == y_base).sum()), len(y_base)),
                "test.fvgpt.new": _percent(int((new[k].argmax(-1) == y_new).sum()), len(y_new)),
            }
            keep = pick(b["has_fg"])
            if keep.any():
                row["test.shift.fvgpt.base"] = shift_index(base[k][keep], z_fg[k][keep], model.configs[k].tau_d)
            out.append(row)
        return out

    def _read_blocks(self, model: FVGPTHeads, feats: RunFeatures, k: int) -> dict:
        """Member k's readings on a streamed file, block by block."""
        tally = {"base": 0, "new": 0, "n_base": 0, "n_new": 0, "kl": 0.0, "n_fg": 0}
        tau = model.configs[k].tau_d
        model = model.member(k)  # the other members run on other files
        for block in feats.test_blocks():
            b, n = _split(block, feats, self.device)
            base = model.base_logits(b["f"], b["g"])[0]
            new = model.new_logits(n["f"], n["f_clip"], n["g"], n["g_clip"])[0][0]
            tally["base"] += int((base.argmax(-1) == b["y"]).sum())
            tally["new"] += int((new.argmax(-1) == n["y"]).sum())
            tally["n_base"], tally["n_new"] = tally["n_base"] + len(b["y"]), tally["n_new"] + len(n["y"])
            keep = b["has_fg"]
            if keep.any():
                z_fg = model.base_logits(b["f_fg"][keep], b["g"])[0]
                tally["kl"] += _kl_sum(base[keep], z_fg, tau)
                tally["n_fg"] += int(keep.sum())
        row = {
            "test.fvgpt.base": _percent(tally["base"], tally["n_base"]),
            "test.fvgpt.new": _percent(tally["new"], tally["n_new"]),
        }
        if tally["n_fg"]:
            row["test.shift.fvgpt.base"] = tally["kl"] / tally["n_fg"]
        return row


@torch.no_grad()
def backbone_epoch_readings(feats: RunFeatures, tau: float) -> list[dict]:
    """The backbone's base test accuracy and foreground shift index after each of its tuning epochs (paper
    Fig. 5), from the class features the features stage kept per epoch; [] without them. Block by block."""
    if feats.text_backbone_by_epoch is None:
        return []
    base = torch.tensor(feats.base)
    by_epoch = feats.text_backbone_by_epoch[:, base]
    s = feats.logit_scale
    correct, kl_sum = torch.zeros(len(by_epoch)), torch.zeros(len(by_epoch), dtype=torch.float64)
    n = n_fg = 0
    for block in feats.test_blocks():
        b, _ = _split(block, feats, by_epoch.device)
        keep = b["has_fg"]
        n, n_fg = n + len(b["y"]), n_fg + int(keep.sum())
        for epoch, g in enumerate(by_epoch):
            z = s * b["f"] @ g.t()
            correct[epoch] += int((z.argmax(-1) == b["y"]).sum())
            if keep.any():
                kl_sum[epoch] += _kl_sum(z[keep], s * b["f_fg"][keep] @ g.t(), tau)
    rows = []
    for epoch in range(len(by_epoch)):
        row = {"epoch": epoch + 1, "test.backbone.base": _percent(float(correct[epoch]), n)}
        if n_fg:
            row["test.shift.backbone.base"] = float(kl_sum[epoch]) / n_fg
        rows.append(row)
    return rows


class _Tally:
    """Sums over blocks of test or training images: counts, and per member [K] float64 sums."""

    def __init__(self) -> None:
        self.sums: dict[str, float | torch.Tensor] = {}

    def add(self, key: str, value) -> None:
        value = value.double().cpu() if isinstance(value, torch.Tensor) else value
        self.sums[key] = self.sums.get(key, 0) + value

    def __getitem__(self, key: str):
        return self.sums.get(key, 0)


@torch.no_grad()
def evaluate(model: FVGPTHeads, feats: RunFeatures) -> list[dict]:
    """One metrics dict per stacked member (clip/backbone entries are the same for all), over the test images
    block by block (one block for a file in memory), so a streamed file is evaluated in bounded memory."""
    device = next(model.parameters()).device
    s = feats.logit_scale
    taus = [cfg.tau_d for cfg in model.configs]
    t = _Tally()
    for block in feats.test_blocks():
        b, n = _split(block, feats, device)
        for subset, d in (("base", b), ("new", n)):
            t.add(f"n.{subset}", len(d["y"]))
            t.add(f"clip.{subset}", int(((s * d["f_clip"] @ d["g_clip"].t()).argmax(-1) == d["y"]).sum()))
            t.add(f"backbone.{subset}", int(((s * d["f"] @ d["g"].t()).argmax(-1) == d["y"]).sum()))
        z_base = model.base_logits(b["f"], b["g"])
        z_new, b_new = model.new_logits(n["f"], n["f_clip"], n["g"], n["g_clip"])
        _, b_base = model.new_logits(b["f_new"], b["f_clip"], b["g"], b["g_clip"])
        t.add("fvgpt.base", (z_base.argmax(-1) == b["y"]).sum(-1))
        t.add("fvgpt.new", (z_new.argmax(-1) == n["y"]).sum(-1))
        t.add("b.base", b_base.sum(-1))
        t.add("b.new", b_new.sum(-1))
        for subset, (z_bb, z_bb_fg, z, z_fg) in _shift_logits(model, b, n, s, feats.shares_clip).items():
            t.add(f"n_fg.{subset}", len(z_bb))
            t.add(f"shift.backbone.{subset}", _per_tau(z_bb, z_bb_fg, taus))
            if z is not None:
                t.add(f"shift.fvgpt.{subset}", _member_kl(z, z_fg, taus))
    g_base = feats.text_backbone[torch.tensor(feats.base)].to(device)
    hist = np.zeros((model.k, 10), dtype=np.int64)
    for full, fg, area in feats.train_blocks():
        r = model.train_gate(full.to(device), fg.to(device), area.to(device), g_base)
        t.add("r.n", r.shape[1])
        t.add("r.sum", r.sum(-1))
        t.add("r.above_half", (r > 0.5).sum(-1))
        hist += np.stack([np.histogram(rk.cpu().numpy(), bins=10, range=(0, 1))[0] for rk in r])
    results = []
    for k in range(model.k):
        row = {}
        for name in ("clip", "backbone"):
            accs = (_percent(t[f"{name}.{x}"], t[f"n.{x}"]) for x in ("base", "new"))
            row.update({f"{name}.{key}": v for key, v in _triple(*accs).items()})
        fvgpt = (_percent(float(t[f"fvgpt.{x}"][k]), t[f"n.{x}"]) for x in ("base", "new"))
        row.update({f"fvgpt.{key}": v for key, v in _triple(*fvgpt).items()})
        row.update(
            {
                "gain.hm": row["fvgpt.hm"] - row["backbone.hm"],
                "gate.b_base": _mean(float(t["b.base"][k]), t["n.base"]),
                "gate.b_new": _mean(float(t["b.new"][k]), t["n.new"]),
                "gate.r_mean": _mean(float(t["r.sum"][k]), t["r.n"]),
                "gate.r_above_half": _mean(float(t["r.above_half"][k]), t["r.n"]),
                "gate.r_hist": hist[k].tolist(),
            }
        )
        for subset in ("base", "new"):
            if t[f"n_fg.{subset}"]:
                row[f"shift.backbone.{subset}"] = float(t[f"shift.backbone.{subset}"][k]) / t[f"n_fg.{subset}"]
                if f"shift.fvgpt.{subset}" in t.sums:
                    row[f"shift.fvgpt.{subset}"] = float(t[f"shift.fvgpt.{subset}"][k]) / t[f"n_fg.{subset}"]
        results.append(row)
    return results


def _shift_logits(model: FVGPTHeads, b: dict, n: dict, s: float, shared: bool) -> dict:
    """Per test subset with foreground views, the logits the foreground shift index D_fg = KL(p_full || p_fg)
    compares: the backbone's on full and foreground views, and every member's (None without CLIP features of
    the foreground views, i.e. for a backbone with its own image path on new classes). Computed once for all K
    members, so evaluating a stack is linear in K."""
    out = {}
    for subset, d in (("base", b), ("new", n)):
        keep = d["has_fg"]
        if not keep.any():
            continue
        f, f_fg = d["f"][keep], d["f_fg"][keep]
        z_bb, z_bb_fg = s * f @ d["g"].t(), s * f_fg @ d["g"].t()
        if subset == "base":
            z, z_fg = model.base_logits(f, d["g"]), model.base_logits(f_fg, d["g"])
        elif shared:
            z = model.new_logits(f, d["f_clip"][keep], d["g"], d["g_clip"])[0]
            z_fg = model.new_logits(f_fg, f_fg, d["g"], d["g_clip"])[0]
        else:
            z = z_fg = None
        out[subset] = (z_bb, z_bb_fg, z, z_fg)
    return out


@torch.no_grad()
def evaluate_transfer(model: FVGPTHeads, feats: RunFeatures, branch: str) -> list[dict]:
    """Cross-dataset accuracy over every test image and every class of `feats` (Table 2), one dict per stacked
    member: zero-shot CLIP, the backbone, and backbone + FVG-PT through `branch`: "base" (FDC, the source's
    own classes, which tuning saw) or "new" (PC with BRG, for a target's classes, none of which it saw). Also
    the foreground shift index of the backbone and of + FVG-PT, and the BRG weight b on the new branch. Block
    by block, like `evaluate`."""
    if branch not in ("base", "new"):
        raise ValueError(f"branch must be base or new, got {branch!r}")
    device = next(model.parameters()).device
    s = feats.logit_scale
    taus = [cfg.tau_d for cfg in model.configs]
    g, g_clip = feats.text_backbone.to(device), feats.text_clip.to(device)
    t = _Tally()
    for block in feats.test_blocks():
        f, f_fg = (block["f"], block["f_fg"]) if branch == "base" else (block["f_new"], block["f_fg_new"])
        f, f_fg, f_clip = f.to(device), f_fg.to(device), block["clip"].to(device)
        y, keep = block["label"].to(device), block["has_fg"].to(device)
        z_backbone = s * f @ g.t()
        if branch == "base":
            z = model.base_logits(f, g)
        else:
            z, b = model.new_logits(f, f_clip, g, g_clip)
            t.add("b", b.sum(-1))
        t.add("n", len(y))
        t.add("clip", int(((s * f_clip @ g_clip.t()).argmax(-1) == y).sum()))
        t.add("backbone", int((z_backbone.argmax(-1) == y).sum()))
        t.add("fvgpt", (z.argmax(-1) == y).sum(-1))
        if not keep.any():
            continue
        t.add("n_fg", int(keep.sum()))
        z_backbone_fg = s * f_fg[keep] @ g.t()
        t.add("shift.backbone", _per_tau(z_backbone[keep], z_backbone_fg, taus))
        if branch == "base":
            z_fg = model.base_logits(f_fg[keep], g)
        else:
            z_fg = model.new_logits(f_fg[keep], f_fg[keep], g, g_clip)[0] if feats.shares_clip else None
        if z_fg is not None:
            t.add("shift.fvgpt", _member_kl(z[:, keep], z_fg, taus))
    results = []
    for k in range(model.k):
        row = {
            "clip.acc": _percent(t["clip"], t["n"]),
            "backbone.acc": _percent(t["backbone"], t["n"]),
            "fvgpt.acc": _percent(float(t["fvgpt"][k]), t["n"]),
        }
        row["gain.acc"] = row["fvgpt.acc"] - row["backbone.acc"]
        if branch == "new":
            row["gate.b"] = _mean(float(t["b"][k]), t["n"])
        if t["n_fg"]:
            row["shift.backbone"] = float(t["shift.backbone"][k]) / t["n_fg"]
            if "shift.fvgpt" in t.sums:
                row["shift.fvgpt"] = float(t["shift.fvgpt"][k]) / t["n_fg"]
        results.append(row)
    return results


def transfer_lines(source: str, dataset: str, metrics: dict) -> str:
    """What the cross-dataset stages print: per backbone and seed, the accuracy of CLIP, it and + FVG-PT."""
    lines = [f"tuned on {source}, tested on {dataset}:"]
    for backbone, by_seed in metrics.items():
        for seed, row in by_seed.items():
            lines.append(
                f"  {backbone:8s} {seed}  clip {row['clip.acc']:6.2f}  backbone {row['backbone.acc']:6.2f}  "
                f"+FVG-PT {row['fvgpt.acc']:6.2f}"
            )
    return "\n".join(lines)
