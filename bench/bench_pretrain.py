"""Pretrain the built-in benchmark's tiny CLIP as a ResNet and as ViTs, at the benchmark's recipe
(`pretrain` in params.yaml), and print each one's zero-shot accuracy and wall time side by side.

    python bench/bench_pretrain.py                          # every variant, 300 steps each (about 25 minutes)
    python bench/bench_pretrain.py --variants rn vit vit@450    # some; NAME@STEPS overrides --steps for one run

Variants: `rn` (fvgpt-tiny-rn), `vit` (fvgpt-tiny-vit: a conv stem, 8 x 8 tokens, width 64, 4 blocks),
`vit-patch` (the same ViT with open_clip's plain patch embedding), `vit-no-decay` (vit-patch at lr 1e-3, no
weight decay on norms, biases and embeddings) and `vit-p16` (patch 16, 16 tokens, no-decay split). Threads are
pinned (`--threads`); run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import open_clip
import torch

from pipeline.config import load_params
from pipeline.models import load_clip
from pipeline.pretrain import train_clip, zero_shot_accuracy

ROOT = Path(__file__).resolve().parents[1]
TEXT = {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3}
VISION = {"image_size": 64, "layers": 4, "width": 128, "head_width": 32}
CONFIGS = {  # open_clip configs without a conv stem (conv_stems.json names only fvgpt-tiny-vit)
    "bench-tiny-vit-patch8": {"embed_dim": 128, "vision_cfg": {**VISION, "patch_size": 8}, "text_cfg": TEXT},
    "bench-tiny-vit-p16": {"embed_dim": 128, "vision_cfg": {**VISION, "patch_size": 16}, "text_cfg": TEXT},
}
# name: (model, lr or None for the params file's, no weight decay on parameters with fewer than 2 dims)
VARIANTS = {
    "rn": ("fvgpt-tiny-rn", None, False),
    "vit": ("fvgpt-tiny-vit", None, False),
    "vit-patch": ("bench-tiny-vit-patch8", None, False),
    "vit-no-decay": ("bench-tiny-vit-patch8", 1e-3, True),
    "vit-p16": ("bench-tiny-vit-p16", None, True),
}


def no_decay_on_vectors(adamw):
    """torch.optim.AdamW with weight decay on matrices only (norms, biases, class token and positions exempt)."""

    def make(params, lr, weight_decay):
        params = list(params)
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        return adamw(groups, lr=lr)

    return make


def variant(text: str) -> tuple[str, int | None]:
    """`vit` or `vit@450` -> (name, steps or None for --steps)."""
    name, _, steps = text.partition("@")
    if name not in VARIANTS or (steps and not (steps.isdigit() and int(steps) > 0)):
        raise argparse.ArgumentTypeError(f"{text!r}: give one of {', '.join(VARIANTS)}, optionally @STEPS")
    return name, int(steps) if steps else None


def run(name: str, steps: int) -> dict:
    model, lr, split = VARIANTS[name]
    spec = load_params(ROOT / "params.yaml").pretrain.spec()
    spec = replace(spec, steps=steps, lr=lr or spec.lr)
    adamw = torch.optim.AdamW
    if split:
        torch.optim.AdamW = no_decay_on_vectors(adamw)
    try:
        torch.manual_seed(spec.seed)
        clip = load_clip(model, None)
        t0 = time.perf_counter()
        losses = train_clip(clip.model, clip.tokenizer, clip.mean, clip.std, spec, log=lambda _msg: None)
        seconds = time.perf_counter() - t0
    finally:
        torch.optim.AdamW = adamw
    acc = zero_shot_accuracy(clip.model, clip.tokenizer, clip.mean, clip.std, spec)
    return {
        "variant": name,
        "lr": spec.lr,
        "steps": steps,
        "seconds": round(seconds, 1),
        "s_per_step": round(seconds / steps, 3),
        "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 3),
        "zero_shot": round(acc["accuracy"], 1),
        "held_out_pairs": round(acc["held_out_accuracy"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", type=variant, default=[(v, None) for v in VARIANTS])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in CONFIGS.items():
            (Path(tmp) / f"{name}.json").write_text(json.dumps(config))
        open_clip.add_model_config(tmp)
        rows = [run(name, steps or args.steps) for name, steps in args.variants]
    for row in rows:
        print(json.dumps(row))
    base = next((r for r in rows if r["variant"] == "rn"), None)
    if base:
        for row in rows:
            ratio = row["seconds"] / base["seconds"]
            label = f"{row['variant']}@{row['steps']}"
            print(f"{label:18s} {row['zero_shot']:5.1f}% zero-shot, {ratio:.2f}x rn's time")


if __name__ == "__main__":
    main()
