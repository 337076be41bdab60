"""Cached FVG-PT against online training, stacked sweeps, the encoding's throughput, and heads scaling.

    python bench/bench_pipeline.py --quick            # 2 CPU cores, tiny CLIP, a few minutes
    python bench/bench_pipeline.py --model ViT-B-16   # GPU: random ViT-B/16 weights are fine for speed

Every ratio is measured side by side in this one run; nothing is compared with numbers from elsewhere.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import Timer, clip_model, dataset, masks_for, peak_memory_mb, random_feature_file, workdir  # noqa: E402

from pipeline.backbones import template_features  # noqa: E402
from pipeline.datasets.basenew import split_base_new  # noqa: E402
from pipeline.device import autocast  # noqa: E402
from pipeline.features.encoded import EncodedViews, encode_views  # noqa: E402
from pipeline.features.encoder import image_encoder  # noqa: E402
from pipeline.features.run_features import RunFeatures, write_run_features  # noqa: E402
from pipeline.features.views_dataset import ImageViews  # noqa: E402
from pipeline.heads.config import ABLATIONS, HeadsConfig  # noqa: E402
from pipeline.heads.model import FVGPTHeads  # noqa: E402
from pipeline.heads.sweep import run_sweep  # noqa: E402
from pipeline.heads.train import train_heads  # noqa: E402
from pipeline.images import load_rgb  # noqa: E402
from pipeline.schedule import epoch_lr  # noqa: E402
from pipeline.views import train_view, view_rng  # noqa: E402


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in r) + " |")


def online_epochs(
    clip,
    encode,
    data: ImageViews,
    labels,
    g,
    g_clip,
    cfg: HeadsConfig,
    device,
    workers: int,
    max_steps: int | None = None,
    text=None,
) -> float:
    """The paper's online loop: every step encodes the full and the foreground view of a fresh augmented batch
    (and, given `text`, gets the class features from it each step, as a backbone's prompts would: `text()` ->
    (g, g_clip)). Stops after `max_steps` steps when given (one step first, untimed: torch.optim's first call
    imports its compiler). Returns the seconds timed."""
    model = FVGPTHeads([cfg], g.shape[1], clip.logit_scale).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    y_all = torch.as_tensor(labels)

    def step(idx: torch.Tensor) -> None:
        items = [data[i] for i in idx.tolist()]
        full = torch.cat([it[0] for it in items])
        fg = torch.cat([it[1] for it in items])
        area = torch.cat([it[2] for it in items]).to(device)
        with torch.no_grad():
            feats = encode(torch.cat([full, fg]))
            g_now, g_clip_now = text() if text else (g, g_clip)
        f_full, f_fg = feats[: len(full)], feats[len(full) :]
        loss, _ = model.losses(
            f_full[None], f_fg[None], f_full[None], area[None], y_all[idx].to(device)[None], g_now, g_clip_now
        )
        opt.zero_grad()
        loss.backward()
        opt.step()

    steps = 0
    if max_steps:
        step(torch.arange(cfg.batch_size))
    with Timer(device) as t:
        for epoch in range(cfg.epochs):
            data.seed = epoch  # a fresh random view per image and epoch
            loader = torch.utils.data.DataLoader(list(range(len(data))), batch_size=cfg.batch_size, shuffle=True)
            for group in opt.param_groups:
                group["lr"] = epoch_lr(epoch, cfg.lr, cfg.epochs, cfg.warmup_epochs, cfg.warmup_lr)
            for idx in loader:
                step(idx)
                steps += 1
                if max_steps and steps == max_steps:
                    break
            if max_steps and steps == max_steps:
                break
    return t.seconds


def gpu_peak(clip, device, x: torch.Tensor, raw_s: float, encode_s: float) -> None:
    """Achieved encoder FLOP/s against a measured bf16 matmul peak."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        clip.model.encode_image(x[:1])
    flops_per_view = counter.get_total_flops()
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    with Timer(device) as t:
        for _ in range(20):
            a @ a
    peak = 20 * 2 * 8192**3 / t.seconds
    n = len(x)
    table(
        "GPU: encoder throughput against the matmul peak (bf16)",
        ["path", "views / s", "TFLOP/s", "share of peak"],
        [
            ["matmul 8192^3", "", peak / 1e12, 1.0],
            ["raw encode_image", n / raw_s, flops_per_view * n / raw_s / 1e12, flops_per_view * n / raw_s / peak],
            [
                "encode end to end",
                n / encode_s,
                flops_per_view * n / encode_s / 1e12,
                flops_per_view * n / encode_s / peak,
            ],
        ],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2-core CPU sizes")
    ap.add_argument("--model", default="fvgpt-tiny-rn")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    torch.manual_seed(0)
    clip = clip_model(args.model, device)
    size = clip.image_size
    shots = 16
    side = (4, 5) if args.quick else (8, 5)
    root = workdir()
    print(
        f"# FVG-PT pipeline benchmark: {args.model} on {device} ({torch.get_num_threads()} threads), "
        f"{side[0] * side[1]} classes, {shots} shots, {args.epochs} epochs, {time.strftime('%Y-%m-%d')}"
    )
    data = dataset(root / "data", side, shots, size)
    store = masks_for(data, root / "masks.h5", size)
    base, new = split_base_new(it.label for it in data.train)
    train_items = [it for it in data.train if it.label in base]
    paths = [it.impath for it in train_items]
    labels = [base.index(it.label) for it in train_items]
    names = data.classnames
    g = template_features(clip, "a photo of a {}.", [names[b] for b in base], device)
    encode = image_encoder(clip.model.encode_image, device, "bf16", True, 256)
    cfg = HeadsConfig(epochs=args.epochs)

    # -- online reference vs cached ------------------------------------------------
    online_data = ImageViews(data.root, paths, store, size, clip.mean, clip.std, views=1, train=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    online_s = online_epochs(clip, encode, online_data, labels, g, g, cfg, device, args.workers)
    online_mem = peak_memory_mb(device)

    views = ImageViews(data.root, paths, store, size, clip.mean, clip.std, views=args.epochs, train=True)
    empty = ImageViews(data.root, [], store, size, clip.mean, clip.std, train=False, require_masks=False)
    with Timer(device) as encode_t:
        encode_views(
            root / "enc.h5", views, empty, encode, clip.embed_dim, {"fingerprint": "b"}, "float16", 32, args.workers
        )
        enc = EncodedViews(root / "enc.h5")
        arrays = {
            "train/feat_full": enc.train["feat_full"],
            "train/feat_fg": enc.train["feat_fg"],
            "train/area": enc.train["area"],
            "train/label": np.asarray(labels),
            "test/feat": np.zeros((1, clip.embed_dim)),
            "test/feat_fg": np.zeros((1, clip.embed_dim)),
            "test/area": np.zeros(1),
            "test/has_fg": np.zeros(1, bool),
            "test/label": np.zeros(1, np.int64),
            "test/subset": np.zeros(1, np.int64),
            "text/backbone": template_features(clip, "a photo of a {}.", names, device).cpu().numpy(),
            "text/clip": template_features(clip, "a photo of a {}.", names, device).cpu().numpy(),
        }
        write_run_features(
            root / "run.h5", arrays, {"classnames": names, "base": base, "new": new, "logit_scale": clip.logit_scale}
        )
    feats = RunFeatures(root / "run.h5", device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with Timer(device) as cached_t:
        train_heads(feats, [cfg], device)
    cached_mem = peak_memory_mb(device)
    n = len(paths) * args.epochs
    per_run_saving = online_s - cached_t.seconds
    table(
        "Heads: online FVG-PT training vs training on the cache (same model, data, epochs, batch 4)",
        ["loop", "s / epoch", "samples / s", "peak memory (MB)", "ratio"],
        [
            ["online (2 encoder forwards per sample)", online_s / args.epochs, n / online_s, online_mem, 1.0],
            [
                "cached heads",
                cached_t.seconds / args.epochs,
                n / cached_t.seconds,
                cached_mem,
                online_s / cached_t.seconds,
            ],
        ],
    )
    table(
        "One-time encoding and break-even",
        ["encode (s)", "online run (s)", "cached run (s)", "break-even runs"],
        [[encode_t.seconds, online_s, cached_t.seconds, encode_t.seconds / max(per_run_saving, 1e-9)]],
    )

    # -- sweep: stacked vs sequential ----------------------------------------------
    rows = {**ABLATIONS["table3"], **ABLATIONS["lambda_d"], **ABLATIONS["table12"]}
    stacked = run_sweep({1: feats}, cfg, rows, device, stacked=True)
    seq = run_sweep({1: feats}, cfg, rows, device, stacked=False)
    table(
        f"Sweep: {len(rows)} head configurations (Table 3 + lambda_d grid + Table 12)",
        ["mode", "training runs", "seconds", "ratio"],
        [
            ["sequential", seq.groups, seq.seconds, 1.0],
            ["stacked", stacked.groups, stacked.seconds, seq.seconds / stacked.seconds],
        ],
    )

    # -- encoding throughput and its parts ----------------------------------------------
    k = min(len(paths), 64)
    with Timer(device) as dec:
        images = [load_rgb(data.root / p) for p in paths[:k]]
    with Timer(device) as aug:
        pairs = [
            train_view(im, store.mask(p), view_rng(0, 0, p), size, clip.mean, clip.std, "mean")
            for im, p in zip(images, paths[:k])
        ]
    x = torch.cat([torch.stack([a for a, _, _ in pairs]), torch.stack([b for _, b, _ in pairs])])
    with torch.inference_mode():
        encode(x[:8])
        with Timer(device) as enc_t:
            feats = encode(x)
        raw_x = x.to(device)
        with Timer(device) as raw_t:
            with autocast(device, "bf16"):
                F.normalize(clip.model.encode_image(raw_x).float(), dim=-1)
    with Timer(device) as write_t:
        write_run_features(root / "w.h5", {"train/feat_full": feats[None].cpu().numpy()}, {})
    total = dec.seconds + aug.seconds + enc_t.seconds + write_t.seconds
    table(
        f"Encode: {2 * k} views (full + foreground of {k} images), batch {2 * k}",
        ["part", "seconds", "share"],
        [
            ["decode", dec.seconds, dec.seconds / total],
            ["augment + mask", aug.seconds, aug.seconds / total],
            ["encode", enc_t.seconds, enc_t.seconds / total],
            ["HDF5 write", write_t.seconds, write_t.seconds / total],
        ],
    )
    table(
        "Encode vs raw encode_image on decoded tensors",
        ["path", "views / s", "ratio to raw"],
        [
            ["raw open_clip encode_image", 2 * k / raw_t.seconds, 1.0],
            ["encode (decode + augment + mask + encode + write)", 2 * k / total, raw_t.seconds / total],
        ],
    )

    if device.type == "cuda":
        gpu_peak(clip, device, raw_x, raw_t.seconds, total)

    # -- scaling -----------------------------------------------------------------
    rows_out = []
    for classes in (10, 100, 1000):
        d = clip.embed_dim if args.quick else 512
        feats_per = 16
        nn_ = classes * feats_per
        v = 2
        path = random_feature_file(root / f"s{classes}.h5", np.repeat(np.arange(classes), feats_per), 2 * classes, d, v)
        sd = RunFeatures(path, device)
        with Timer(device) as t:
            train_heads(sd, [HeadsConfig(epochs=1, warmup_epochs=0)], device)
        rows_out.append([classes, nn_, t.seconds, t.seconds / nn_ * 1e3])
    table(
        "Heads scaling: one epoch, 16 shots per class, batch 4",
        ["base classes", "training images", "s / epoch", "ms / image"],
        rows_out,
    )


if __name__ == "__main__":
    main()
