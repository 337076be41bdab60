"""Distributions and the gates' inputs, from frozen logits (docs/method.md has the notation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def log_probs(z: torch.Tensor, tau: torch.Tensor | float) -> torch.Tensor:
    """log p, p = softmax(z / tau_d): Eq. (4) for the backbone's views, Eq. (14) for CLIP."""
    return F.log_softmax(z / tau, dim=-1)


def entropy(logp: torch.Tensor) -> torch.Tensor:
    return -(logp.exp() * logp).sum(-1)


def prob_cosine(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(logp.exp(), logq.exp(), dim=-1)


def kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum p (log p - log q), per row."""
    return (logp.exp() * (logp - logq)).sum(-1)


def frg_inputs(logp_full: torch.Tensor, logp_fg: torch.Tensor, area: torch.Tensor, names) -> torch.Tensor:
    """FRG's inputs, Eq. (5): u = [H(p_full) - H(p_fg), cos(p_full, p_fg), A(m)], restricted to `names`."""
    parts = {
        "entropy_gap": entropy(logp_full) - entropy(logp_fg),
        "cosine": prob_cosine(logp_full, logp_fg),
        "area": area,
    }
    return torch.stack([parts[n] for n in names], -1)


def brg_inputs(logp_full: torch.Tensor, logp_clip: torch.Tensor, names) -> torch.Tensor:
    """BRG's inputs, Eq. (13): s = [H(p_full), H(p_CLIP), cos(p_full, p_CLIP)], restricted to `names`."""
    parts = {
        "entropy_full": entropy(logp_full),
        "entropy_clip": entropy(logp_clip),
        "cosine": prob_cosine(logp_full, logp_clip),
    }
    return torch.stack([parts[n] for n in names], -1)


def frg_target(z_full: torch.Tensor, z_fg: torch.Tensor, y: torch.Tensor, delta, trusted: torch.Tensor) -> torch.Tensor:
    """FRG's target from the CE losses of Eq. (3): r* = 1[CE(z_fg, y) + delta < CE(z_full, y)], and 0 where the
    mask area is not trusted."""
    ce_full = F.cross_entropy(z_full.flatten(0, -2), y.flatten(), reduction="none").view(y.shape)
    ce_fg = F.cross_entropy(z_fg.flatten(0, -2), y.flatten(), reduction="none").view(y.shape)
    return ((ce_fg + delta < ce_full) & trusted).float()
