"""FVG-PT's heads (FRG, FDC, BRG) for K stacked configurations, and their losses.

Everything upstream is frozen, so the heads see only cached features:
`f` full-view, `f_fg` foreground-view and `f_clip` zero-shot CLIP image
features, the backbone's class text features `g` and CLIP's `g_clip`.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch
import torch.nn.functional as F

from .config import LOSSES, HeadsConfig
from .losses import base_loss, distillation_loss, fdc_ce, frg_bce, pc_loss
from .signals import brg_inputs, frg_inputs, frg_target, log_probs
from .stacked import StackedAdapter, StackedMLP

MODULES = ("frg_gate", "visual_adapter", "text_adapter", "brg_gate")


def module_generators(configs: Sequence[HeadsConfig], module: str) -> list[torch.Generator]:
    """One seeded stream per (module, member): a module's initial weights depend only on the member's seed
    and the module's name, so changing one branch's architecture never moves another branch's weights."""
    seeds = [int.from_bytes(hashlib.sha256(f"{module}/{c.seed}".encode()).digest()[:7], "little") for c in configs]
    return [torch.Generator().manual_seed(s) for s in seeds]


class FVGPTHeads(torch.nn.Module):
    def __init__(
        self, configs: Sequence[HeadsConfig], dim: int, logit_scale: float, keep_image_norm: bool = False
    ) -> None:
        """`keep_image_norm`: FDC's visual adapter keeps its input's length (MMRL's fused base-class features,
        which are not unit vectors; StackedAdapter)."""
        super().__init__()
        if len({c.structure for c in configs}) != 1:
            raise ValueError("stacked configs must share their structure (sizes, indicators, data, schedule)")
        self.configs = list(configs)
        c0 = configs[0]
        gens = {module: module_generators(configs, module) for module in MODULES}
        init = [c.adapter_init for c in configs]
        self.frg_gate = StackedMLP(gens["frg_gate"], len(c0.frg_indicators), c0.gate_hidden, 1, c0.gate_depth)
        self.visual_adapter = StackedAdapter(gens["visual_adapter"], dim, c0.adapter_hidden, init)
        self.visual_adapter.keep_norm = keep_image_norm
        self.text_adapter = (
            StackedAdapter(gens["text_adapter"], dim, c0.adapter_hidden, init) if c0.adapters == "both" else None
        )
        self.brg_gate = StackedMLP(gens["brg_gate"], len(c0.brg_indicators), c0.gate_hidden, 1, c0.gate_depth)
        self.logit_scale = logit_scale
        fdc_scale = [logit_scale if c.fdc_logit_scale == "backbone" else float(c.fdc_logit_scale) for c in configs]
        per_member = {
            "lambda_frg": [c.lambda_frg for c in configs],
            "lambda_d": [c.lambda_d for c in configs],
            "lambda_new": [c.lambda_new for c in configs],
            "tau": [c.tau_d for c in configs],
            "delta": [c.delta for c in configs],
            "area_min": [c.area_min for c in configs],
            "area_max": [c.area_max for c in configs],
            "r_constant": [c.r_constant for c in configs],
            "frg_on": [float(c.frg) for c in configs],
            "detach_r": [float(c.detach_r) for c in configs],
            "kl_scale": [c.tau_d**2 if c.kl_tau_squared else 1.0 for c in configs],
            "fdc_scale": fdc_scale,
        }
        for name, values in per_member.items():
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32))
        self.register_buffer("loss_weights", torch.tensor([[c.weight(x) for x in LOSSES] for c in configs]))

    @property
    def keep_image_norm(self) -> bool:
        return self.visual_adapter.keep_norm

    @property
    def k(self) -> int:
        return len(self.configs)

    # --- pieces -------------------------------------------------------------
    def _col(self, name: str) -> torch.Tensor:
        return getattr(self, name).view(-1, 1)

    def _tau(self) -> torch.Tensor:
        return self.tau.view(-1, 1, 1)

    def adapt_text(self, g: torch.Tensor) -> torch.Tensor:
        """g [C, D] shared by the members, or [K, C, D] one per member -> the adapted [K, C, D]."""
        g = g if g.dim() == 3 else g.unsqueeze(0).expand(self.k, -1, -1)
        return self.text_adapter(g) if self.text_adapter is not None else F.normalize(g, dim=-1)

    def fdc_logits(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """z_FDC, Eq. (8): s_FDC f~ . g~ [K, B, C] from image features f [K, B, D] and class features g [C, D]
        (or [K, C, D])."""
        return self.fdc_scale.view(-1, 1, 1) * torch.bmm(self.visual_adapter(f), self.adapt_text(g).transpose(1, 2))

    def frozen_logits(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """z = s f . g of a frozen model: the backbone's z_full, or CLIP's z_CLIP, Eq. (11), with CLIP's features.
        g is [C, D], or [K, C, D] with f [K, B, D]."""
        return self.logit_scale * f @ g.transpose(-1, -2)

    def trust_score(self, logp_full, logp_fg, area) -> torch.Tensor:
        """FRG's trust score r = sigmoid(MLP(u)) (Sec. 3.2) with u of Eq. (5), [K, B]."""
        u = frg_inputs(logp_full, logp_fg, area, self.configs[0].frg_indicators)
        return torch.sigmoid(self.frg_gate(u)).squeeze(-1)

    def backbone_gate(self, logp_full, logp_clip) -> torch.Tensor:
        """BRG's weight b = sigmoid(MLP(s)) (Sec. 3.4) with s of Eq. (13), [K, B]."""
        s = brg_inputs(logp_full, logp_clip, self.configs[0].brg_indicators)
        return torch.sigmoid(self.brg_gate(s)).squeeze(-1)

    def prior_calibrated(self, z_full, z_clip) -> tuple[torch.Tensor, torch.Tensor]:
        """z_PC = (1 - b) z_full + b z_CLIP, Eq. (12), and b."""
        tau = self._tau()
        b = self.backbone_gate(log_probs(z_full, tau), log_probs(z_clip, tau))
        return (1 - b).unsqueeze(-1) * z_full + b.unsqueeze(-1) * z_clip, b

    def distillation_weight(self, r: torch.Tensor, trusted: torch.Tensor) -> torch.Tensor:
        """The r of L_dist, Eq. (9), per member [K, B].

        With FRG on: the trust score (detached when `detach_r`), set to 0 on views whose mask area is outside
        [area_min, area_max]. With FRG off: the constant `r_constant` on every view; the area rule belongs to FRG.
        """
        detach = self._col("detach_r")
        r_gate = (detach * r.detach() + (1 - detach) * r) * trusted.float()
        on = self._col("frg_on")
        return on * r_gate + (1 - on) * self._col("r_constant")

    # --- training -----------------------------------------------------------
    def losses(
        self, f_full, f_fg, f_clip, area, y, g, g_clip, f_new=None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L = L_base + lambda_new L_PC (Sec. 3.4) per member for one batch: inputs [K, B, ...]; g, g_clip
        [C_base, D] or [K, C_base, D]. PC runs on the new-class branch's features `f_new` (default f_full; MMRL:
        its class-token features, while FRG and FDC see its base-class features). Returns (the sum over members,
        to backpropagate; the terms per member [K])."""
        tau = self._tau()
        z_full, z_fg = self.frozen_logits(f_full, g), self.frozen_logits(f_fg, g)
        z_clip = self.frozen_logits(f_clip, g_clip)
        lp_full, lp_fg, lp_clip = log_probs(z_full, tau), log_probs(z_fg, tau), log_probs(z_clip, tau)

        trusted = (area >= self._col("area_min")) & (area <= self._col("area_max"))
        r = self.trust_score(lp_full, lp_fg, torch.nan_to_num(area))
        r_star = frg_target(z_full, z_fg, y, self._col("delta"), trusted)
        r_used = self.distillation_weight(r, trusted)

        z_fdc = self.fdc_logits(f_full, g)
        dist = distillation_loss(lp_fg, lp_full, log_probs(z_fdc, tau), r_used, self.kl_scale)
        ce_fdc = fdc_ce(z_fdc, y)
        bce = frg_bce(r, r_star)

        z_new = z_full if f_new is None or f_new is f_full else self.frozen_logits(f_new, g)
        z_pc, b = self.prior_calibrated(z_new, z_clip)
        pc_ce, pc_kl = pc_loss(z_pc, y, lp_clip, tau, self.kl_scale)

        terms = torch.stack([ce_fdc, bce, dist, pc_ce, pc_kl], 1) * self.loss_weights  # the switches of Table 12
        l_base = base_loss(terms[:, 0], terms[:, 1], terms[:, 2], self.lambda_frg, self.lambda_d)
        total = l_base + self.lambda_new * (terms[:, 3] + terms[:, 4])
        parts = {
            "loss": total,
            **{name: terms[:, i] for i, name in enumerate(LOSSES)},
            "r": r.mean(1),
            "b": b.mean(1),
            "r_star": r_star.mean(1),
        }
        return total.sum(), {k: v.detach() for k, v in parts.items()}

    def member(self, k: int) -> FVGPTHeads:
        """Member k alone, as a K = 1 model (every weight and setting has the member axis first)."""
        single = FVGPTHeads([self.configs[k]], self.visual_adapter.w1.shape[1], self.logit_scale, self.keep_image_norm)
        single.load_state_dict({name: value[k : k + 1].clone() for name, value in self.state_dict().items()})
        return single.to(next(self.parameters()).device).eval()

    # --- inference ----------------------------------------------------------
    def base_scores(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Inference on base classes (Fig. 3), [K, M, C]: z_FDC where FDC is on, the frozen backbone's logits
        where it is off. f is [M, D] for every member, or [K, M, D] with g [K, C, D], one input per member.
        Differentiable in f (Grad-CAM); `base_logits` is the same without a graph."""
        fk = f if f.dim() == 3 else f.unsqueeze(0).expand(self.k, -1, -1)  # [K, M, D]: each member its own
        z_fdc = self.fdc_logits(fk, g)
        fdc_on = torch.tensor([c.fdc for c in self.configs], device=f.device).view(-1, 1, 1)
        return torch.where(fdc_on, z_fdc, self.frozen_logits(fk, g))

    def new_scores(self, f: torch.Tensor, f_clip: torch.Tensor, g: torch.Tensor, g_clip: torch.Tensor):
        """Inference on new classes (Fig. 3), [K, M, C], and b [K, M]: z_PC with PC on; without PC the base
        branch. Differentiable in f and f_clip; `new_logits` is the same without a graph."""
        z_full, z_clip = self.frozen_logits(f, g), self.frozen_logits(f_clip, g_clip)
        if z_full.dim() == 2:  # one input for every member
            z_full, z_clip = (z.unsqueeze(0).expand(self.k, -1, -1) for z in (z_full, z_clip))
        z_pc, b = self.prior_calibrated(z_full, z_clip)
        pc_on = torch.tensor([c.pc for c in self.configs], device=f.device).view(-1, 1, 1)
        return torch.where(pc_on, z_pc, self.base_scores(f, g)), b

    @torch.no_grad()
    def base_logits(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.base_scores(f, g)

    @torch.no_grad()
    def new_logits(self, f: torch.Tensor, f_clip: torch.Tensor, g: torch.Tensor, g_clip: torch.Tensor):
        return self.new_scores(f, f_clip, g, g_clip)

    @torch.no_grad()
    def train_gate(self, f_full, f_fg, area, g) -> torch.Tensor:
        """r [K, V*N] over cached training views (statistics of the trust score)."""
        tau = self._tau()
        d = f_full.shape[-1]
        z_full = self.frozen_logits(f_full.reshape(-1, d), g).unsqueeze(0).expand(self.k, -1, -1)
        z_fg = self.frozen_logits(f_fg.reshape(-1, d), g).unsqueeze(0).expand(self.k, -1, -1)
        area = torch.nan_to_num(area).reshape(1, -1).expand(self.k, -1)
        return self.trust_score(log_probs(z_full, tau), log_probs(z_fg, tau), area)
