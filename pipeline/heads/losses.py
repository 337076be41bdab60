"""FVG-PT's loss terms, one paper equation per function, per stacked member.

Inputs carry a leading member axis K and a batch axis B; each function
returns the batch mean per member, [K]. Loss switches and weights are
applied by the caller (`FVGPTHeads.losses`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .signals import kl, log_probs


def _ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per member: z [K, B, C], y [K, B] -> [K]."""
    return F.cross_entropy(z.transpose(1, 2), y, reduction="none").mean(1)


def frg_bce(r: torch.Tensor, r_star: torch.Tensor) -> torch.Tensor:
    """L_FRG, Eq. (6): BCE of the trust score r against the target r*, both [K, B]."""
    return F.binary_cross_entropy(r.clamp(1e-6, 1 - 1e-6), r_star, reduction="none").mean(1)


def distillation_loss(
    lp_fg: torch.Tensor, lp_full: torch.Tensor, lp_fdc: torch.Tensor, r: torch.Tensor, kl_scale: torch.Tensor
) -> torch.Tensor:
    """L_dist, Eq. (9): r KL(p_fg || p_FDC) + (1 - r) KL(p_full || p_FDC); log-probabilities [K, B, C], r [K, B].

    `kl_scale` [K] is 1, or tau_d^2 with `kl_tau_squared` (the paper writes no factor).
    """
    return (r * kl(lp_fg, lp_fdc) + (1 - r) * kl(lp_full, lp_fdc)).mean(1) * kl_scale


def base_loss(
    ce_fdc: torch.Tensor, bce: torch.Tensor, dist: torch.Tensor, lambda_frg: torch.Tensor, lambda_d: torch.Tensor
) -> torch.Tensor:
    """L_base, Eq. (10): CE(z_FDC, y) + lambda_frg L_FRG + lambda_d L_dist, per member [K]."""
    return ce_fdc + lambda_frg * bce + lambda_d * dist


def pc_loss(
    z_pc: torch.Tensor, y: torch.Tensor, lp_clip: torch.Tensor, tau: torch.Tensor, kl_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """L_PC, Eq. (15): CE(z_PC, y) + KL(p_CLIP || softmax(z_PC / tau_d)). Returns its two terms, each [K]."""
    return _ce(z_pc, y), kl(lp_clip, log_probs(z_pc, tau)).mean(1) * kl_scale


def fdc_ce(z_fdc: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The cross-entropy term of Eq. (10), CE(z_FDC, y), per member [K]."""
    return _ce(z_fdc, y)
