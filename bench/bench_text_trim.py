"""A prompt-tuning step with the text tower cut at the last EOT against the same step over every column.

    python bench/bench_text_trim.py                         # the benchmark's four backbones on its tiny CLIPs
    python bench/bench_text_trim.py --cases vitb16-coop     # CoOp on ViT-B/16 (random weights, 77 columns)

Each case times `--steps` optimiser steps of `training_loss` (batch 4, the stage's own loss) both ways,
interleaved, `--repeats` times, and prints min / median / max and the ratio of medians. Both ways train from
the same state on the same batch; the features agree to float rounding (tests/test_backbones.py). Threads are
pinned (`--threads`); run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from _timing import print_summary

from pipeline.backbones import _text, backbone_template, create_backbone
from pipeline.config import load_params
from pipeline.datasets.synthetic import COLOURS, SHAPES
from pipeline.models import load_clip

ROOT = Path(__file__).resolve().parents[1]
# case: (CLIP model, backbone, params file with its section, classes)
CASES = {
    "rn-coop": ("fvgpt-tiny-rn", "coop", "params.yaml", 20),
    "rn-kgcoop": ("fvgpt-tiny-rn", "kgcoop", "params.yaml", 20),
    "vit-promptsrc": ("fvgpt-tiny-vit", "promptsrc", "configs/benchmark_vit.yaml", 20),
    "vit-mmrl": ("fvgpt-tiny-vit", "mmrl", "configs/benchmark_vit.yaml", 20),
    "vitb16-coop": ("ViT-B-16", "coop", "params.yaml", 100),
}


def class_names(n: int) -> list[str]:
    names = [f"{c} {s}" for s in SHAPES for c in COLOURS]
    return [names[i % len(names)] + (f" number {i // len(names)}" if i >= len(names) else "") for i in range(n)]


def steps_seconds(backbone, images, labels, names, steps: int) -> float:
    params = [p for p in backbone.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss, _ = backbone.training_loss(images, labels, names)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def run(case: str, steps: int, repeats: int) -> None:
    model, name, params_file, n_classes = CASES[case]
    section = load_params(ROOT / params_file).backbone.settings_for(name, "synthetic")
    clip = load_clip(model)
    names = class_names(n_classes)
    torch.manual_seed(0)
    backbone = create_backbone(name, clip, backbone_template(name, "synthetic"), classnames=names, **section)
    backbone.train()
    start = {k: v.clone() for k, v in backbone.state_dict().items()}
    images = torch.randn(4, 3, clip.image_size, clip.image_size)
    labels = torch.randint(0, n_classes, (4,))
    trimmed_length = _text.trimmed_length
    every_column = lambda model, tokens: tokens.shape[1]  # noqa: E731
    seconds: dict[str, list[float]] = {"every column": [], "to the last EOT": []}
    for _ in range(repeats):
        for way, length in (("every column", every_column), ("to the last EOT", trimmed_length)):
            backbone.load_state_dict(start)
            _text.trimmed_length = length
            try:
                steps_seconds(backbone, images, labels, names, 1)  # warm-up: caches, first-call allocations
                seconds[way].append(steps_seconds(backbone, images, labels, names, steps))
            finally:
                _text.trimmed_length = trimmed_length
    tokens = clip.tokenizer([backbone.template.format(n) for n in names])
    print(
        f"\n{case}: {name} on {model}, {n_classes} classes, {steps} steps; "
        f"{_text.trimmed_length(clip.model, tokens)} of {tokens.shape[1]} columns (template prompts)"
    )
    print_summary(seconds, digits=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=[c for c in CASES if "vitb16" not in c])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.ERROR)
    for case in args.cases:
        run(case, args.steps, args.repeats)


if __name__ == "__main__":
    main()
