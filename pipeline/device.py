"""Device choice and mixed precision, the same way in every stage."""

from __future__ import annotations

import contextlib

import torch


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} requested but CUDA is not available; use device: auto or cpu")
    return torch.device(preference)


def autocast(device: torch.device, dtype: str = "bf16"):
    """bf16/fp16 autocast on GPU; a no-op on CPU, where results must be bit-exact per seed."""
    if device.type != "cuda" or dtype in ("fp32", "float32", None):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)
