"""MLPs and residual adapters with a leading member axis K.

K head configurations train side by side as one set of tensors: every
member has its own weights, initialised from its own seed exactly as a
single run would, and its own gradients (the summed loss separates).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F


def _linear_init(gens: Sequence[torch.Generator], n_in: int, n_out: int, scales: Sequence[float] | None = None):
    """nn.Linear's default init (uniform +-1/sqrt(n_in)) per member, then scaled by that member's scale."""
    bound = 1.0 / math.sqrt(n_in)
    scales = [1.0] * len(gens) if scales is None else list(scales)
    w = torch.stack([(torch.rand(n_in, n_out, generator=g) * 2 - 1) * bound * s for g, s in zip(gens, scales)])
    b = torch.stack([(torch.rand(1, n_out, generator=g) * 2 - 1) * bound * s for g, s in zip(gens, scales)])
    return torch.nn.Parameter(w), torch.nn.Parameter(b)


class StackedMLP(torch.nn.Module):
    """`depth` linear layers with ReLU between: n_in -> hidden -> ... -> n_out, for K members."""

    def __init__(self, gens: Sequence[torch.Generator], n_in: int, hidden: int, n_out: int, depth: int) -> None:
        super().__init__()
        dims = [n_in] + [hidden] * (depth - 1) + [n_out]
        self.weights, self.biases = torch.nn.ParameterList(), torch.nn.ParameterList()
        for a, b in zip(dims, dims[1:]):
            w, bias = _linear_init(gens, a, b)
            self.weights.append(w)
            self.biases.append(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [K, B, n_in] -> [K, B, n_out]."""
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = F.relu(x)
        return x


class StackedAdapter(torch.nn.Module):
    """FDC's residual adapter, Eq. (7): f~ = L2Norm(f + MLP(f)), MLP D -> hidden -> D (ReLU).

    The last layer of member k is scaled by `init_scales[k]` so training starts at the backbone. With
    `keep_norm`, f~ keeps f's length: a backbone whose base-class image feature is a mix of two unit features
    (MMRL) has shorter features, and its logits start at the backbone's only at that length.
    """

    keep_norm = False

    def __init__(self, gens: Sequence[torch.Generator], dim: int, hidden: int, init_scales: Sequence[float]) -> None:
        super().__init__()
        self.w1, self.b1 = _linear_init(gens, dim, hidden)
        self.w2, self.b2 = _linear_init(gens, hidden, dim, init_scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [K, B, D] -> [K, B, D], unit norm (x's norm with `keep_norm`)."""
        h = F.relu(torch.baddbmm(self.b1, x, self.w1))
        out = F.normalize(x + torch.baddbmm(self.b2, h, self.w2), dim=-1)
        return out * x.norm(dim=-1, keepdim=True) if self.keep_norm else out
