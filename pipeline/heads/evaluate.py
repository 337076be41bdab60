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


def _acc(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float((pred == target).float().mean() * 100) if len(target) else float("nan")


def _local_labels(labels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    lookup = {c: i for i, c in enumerate(classes)}
    return torch.tensor([lookup[int(y)] for y in labels], dtype=torch.long, device=labels.device)


def shift_index(z_full: torch.Tensor, z_fg: torch.Tensor, tau: float) -> float:
    """The foreground shift index (Supp. A.1): D_fg = KL(p_full || p_fg) at tau_d, averaged over images."""
    return float(kl(log_probs(z_full, tau), log_probs(z_fg, tau)).mean())


def _triple(base: float, new: float) -> dict:
    return {"base": base, "new": new, "hm": harmonic_mean(base, new)}


@torch.no_grad()
def _test_subsets(feats: RunFeatures, device) -> tuple[dict, dict]:
    """The base and the new test images' features, labels and class features, on `device`."""
    out = {}
    for subset, classes in (("base", feats.base), ("new", feats.new)):
        mask = feats.test_subset == (0 if subset == "base" else 1)
        cls = torch.tensor(classes)
        # each subset through its own branch's image features (MMRL: fused on base classes, class token on new)
        f, f_fg = (
            (feats.test_feat, feats.test_feat_fg) if subset == "base" else (feats.test_feat_new, feats.test_feat_fg_new)
        )
        out[subset] = dict(
            f=f[mask].to(device),
            f_new=feats.test_feat_new[mask].to(device),
            f_clip=feats.test_clip[mask].to(device),
            f_fg=f_fg[mask].to(device),
            has_fg=feats.test_has_fg[mask].to(device),
            y=_local_labels(feats.test_label[mask], classes).to(device),
            g=feats.text_backbone[cls].to(device),
            g_clip=feats.text_clip[cls].to(device),
        )
    return out["base"], out["new"]


class EpochReadings:
    """+ FVG-PT's base and new test accuracy and its foreground shift index on base test images, for a trend
    over training epochs (paper Fig. 5): `readings(model)` gives one dict per member of a stack whose member k
    runs on files[k], all members in one batched pass (the test tensors stacked once). Read for the figure
    only, never to choose anything."""

    def __init__(self, files: list[RunFeatures], device="cpu") -> None:
        self.subsets = [_test_subsets(f, device) for f in files]
        shapes = {tuple(tuple(t.shape) for t in (*b.values(), *n.values())) for b, n in self.subsets}
        self.stacked = None
        if len(shapes) == 1:  # one test split (the runs of one dataset): every member in one pass
            self.stacked = [
                {key: torch.stack([pair[i][key] for pair in self.subsets]) for key in self.subsets[0][i]}
                for i in (0, 1)
            ]

    @torch.no_grad()
    def __call__(self, model: FVGPTHeads) -> list[dict]:
        if self.stacked is not None:
            return self._read(model, *self.stacked, list(range(model.k)))
        return [self._read(model, b, n, [k])[0] for k, (b, n) in enumerate(self.subsets)]

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
            row = {
                "test.fvgpt.base": _acc(base[k].argmax(-1), pick(b["y"])),
                "test.fvgpt.new": _acc(new[k].argmax(-1), pick(n["y"])),
            }
            keep = pick(b["has_fg"])
            if keep.any():
                row["test.shift.fvgpt.base"] = shift_index(base[k][keep], z_fg[k][keep], model.configs[k].tau_d)
            out.append(row)
        return out


def backbone_epoch_readings(feats: RunFeatures, tau: float) -> list[dict]:
    """The backbone's base test accuracy and foreground shift index after each of its tuning epochs (paper
    Fig. 5), from the class features the features stage kept per epoch; [] without them."""
    if feats.text_backbone_by_epoch is None:
        return []
    b, _ = _test_subsets(feats, "cpu")
    base = torch.tensor(feats.base)
    keep, s = b["has_fg"], feats.logit_scale
    rows = []
    for epoch, g in enumerate(feats.text_backbone_by_epoch[:, base], start=1):
        z, z_fg = s * b["f"] @ g.t(), s * b["f_fg"] @ g.t()
        row = {"epoch": epoch, "test.backbone.base": _acc(z.argmax(-1), b["y"])}
        if keep.any():
            row["test.shift.backbone.base"] = shift_index(z[keep], z_fg[keep], tau)
        rows.append(row)
    return rows


def evaluate(model: FVGPTHeads, feats: RunFeatures) -> list[dict]:
    """One metrics dict per stacked member (clip/backbone entries are the same for all)."""
    device = next(model.parameters()).device
    s = feats.logit_scale
    b, n = _test_subsets(feats, device)
    acc = {
        name: {
            k: _acc(
                (
                    s * d["f" if name == "backbone" else "f_clip"] @ d["g" if name == "backbone" else "g_clip"].t()
                ).argmax(-1),
                d["y"],
            )
            for k, d in (("base", b), ("new", n))
        }
        for name in ("clip", "backbone")
    }
    z_base = model.base_logits(b["f"], b["g"])
    z_new, b_new = model.new_logits(n["f"], n["f_clip"], n["g"], n["g_clip"])
    _, b_base = model.new_logits(b["f_new"], b["f_clip"], b["g"], b["g_clip"])
    shared = bool(feats.attrs.get("shares_clip_image", True))

    r_train = model.train_gate(
        feats.feat_full.to(device),
        feats.feat_fg.to(device),
        feats.area.to(device),
        feats.text_backbone[torch.tensor(feats.base)].to(device),
    )
    shift_logits = _shift_logits(model, b, n, s, shared)
    results = []
    for k, cfg in enumerate(model.configs):
        tau = cfg.tau_d
        row = {}
        for name in ("clip", "backbone"):
            row.update({f"{name}.{key}": v for key, v in _triple(acc[name]["base"], acc[name]["new"]).items()})
        fv_base, fv_new = _acc(z_base[k].argmax(-1), b["y"]), _acc(z_new[k].argmax(-1), n["y"])
        row.update({f"fvgpt.{key}": v for key, v in _triple(fv_base, fv_new).items()})
        row.update(
            {
                "gain.hm": row["fvgpt.hm"] - row["backbone.hm"],
                "gate.b_base": float(b_base[k].mean()),
                "gate.b_new": float(b_new[k].mean()),
                "gate.r_mean": float(r_train[k].mean()),
                "gate.r_above_half": float((r_train[k] > 0.5).float().mean()),
                "gate.r_hist": np.histogram(r_train[k].cpu().numpy(), bins=10, range=(0, 1))[0].tolist(),
            }
        )
        for subset, (z_bb, z_bb_fg, z, z_fg) in shift_logits.items():
            row[f"shift.backbone.{subset}"] = shift_index(z_bb, z_bb_fg, tau)
            if z is not None:
                row[f"shift.fvgpt.{subset}"] = shift_index(z[k], z_fg[k], tau)
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
    the foreground shift index of the backbone and of + FVG-PT, and the BRG weight b on the new branch."""
    if branch not in ("base", "new"):
        raise ValueError(f"branch must be base or new, got {branch!r}")
    device = next(model.parameters()).device
    s = feats.logit_scale
    own = (feats.test_feat, feats.test_feat_fg) if branch == "base" else (feats.test_feat_new, feats.test_feat_fg_new)
    f, f_fg, f_clip = (x.to(device) for x in (*own, feats.test_clip))
    g, g_clip = feats.text_backbone.to(device), feats.text_clip.to(device)
    y = feats.test_label.to(device)
    has_fg = feats.test_has_fg.to(device)
    shared = bool(feats.attrs.get("shares_clip_image", True))
    z_backbone = s * f @ g.t()
    if branch == "base":
        z = model.base_logits(f, g)
        b = None
    else:
        z, b = model.new_logits(f, f_clip, g, g_clip)
    common = {"clip.acc": _acc((s * f_clip @ g_clip.t()).argmax(-1), y), "backbone.acc": _acc(z_backbone.argmax(-1), y)}
    keep = has_fg
    z_backbone_fg = s * f_fg[keep] @ g.t()
    if branch == "base":
        z_fg = model.base_logits(f_fg[keep], g)
    else:
        z_fg = model.new_logits(f_fg[keep], f_fg[keep], g, g_clip)[0] if shared else None
    results = []
    for k, cfg in enumerate(model.configs):
        row = {**common, "fvgpt.acc": _acc(z[k].argmax(-1), y)}
        row["gain.acc"] = row["fvgpt.acc"] - row["backbone.acc"]
        if b is not None:
            row["gate.b"] = float(b[k].mean())
        if keep.any():
            row["shift.backbone"] = shift_index(z_backbone[keep], z_backbone_fg, cfg.tau_d)
            if z_fg is not None:
                row["shift.fvgpt"] = shift_index(z[k][keep], z_fg[k], cfg.tau_d)
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
