"""The encode stage's path against the bare image encoder at the same batch size, by DataLoader workers,
interleaved repetitions.

    python bench/bench_encode.py --quick                 # the tiny CLIP at 64 px, 2 CPU cores: about a minute
    python bench/bench_encode.py --model ViT-B-16        # random ViT-B/16 weights at 224 px

Bare: the encoder (`image_encoder`, as the stage wraps it) on view tensors made beforehand, batch by batch as
the stage batches them. Encode: `encode_views`, the stage's own function: decode, crops, flips and masks
(`ImageViews`), the same encoder, the checks and the HDF5 writes, with 0 (in process), 1 and 2 workers.
Repetitions interleave the paths, so a slower minute of the machine slows all of them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import Timer, clip_model, dataset, masks_for, workdir  # noqa: E402

from pipeline.features.encoded import encode_views  # noqa: E402
from pipeline.features.encoder import image_encoder  # noqa: E402
from pipeline.features.views_dataset import ImageViews  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--quick", action="store_true", help="the tiny CLIP (fvgpt-tiny-rn) instead of --model")
    ap.add_argument("--images", type=int, default=128, help="training images encoded per repetition")
    ap.add_argument("--views", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    model = "fvgpt-tiny-rn" if args.quick else args.model
    clip = clip_model(model, device)
    root = workdir()
    data = dataset(root / "data", (8, 5), max(1, -(-args.images // 40)), clip.image_size)
    store = masks_for(data, root / "masks.h5", clip.image_size)
    paths = [it.impath for it in data.train][: args.images]
    common = dict(size=clip.image_size, mean=clip.mean, std=clip.std)
    views = ImageViews(data.root, paths, store, views=args.views, train=True, **common)
    empty = ImageViews(data.root, [], store, train=False, require_masks=False, **common)
    encode = image_encoder(clip.model.encode_image, device, "bf16", True, 256)
    batch_images = 32
    # the bare encoder's inputs: the same views, made once, in the stage's batches
    batches = []
    for s in range(0, len(views), batch_images):
        items = [views[i] for i in range(s, min(len(views), s + batch_images))]
        batches.append(torch.cat([torch.cat([it[0] for it in items]), torch.cat([it[1] for it in items])]))
    n_views = sum(len(b) for b in batches)
    with torch.inference_mode():
        encode(batches[0][:8])
    print(
        f"# encode vs the bare encoder: {model} on CPU ({args.threads} threads), {len(views)} images x {args.views} "
        f"views x (full + foreground) = {n_views} views per repetition, batch {batch_images} images, "
        f"{args.repeats} interleaved repetitions, {time.strftime('%Y-%m-%d')}"
    )
    paths_timed = ["bare encoder"] + [f"encode, {w} workers" for w in args.workers]
    seconds: dict[str, list[float]] = {p: [] for p in paths_timed}
    for rep in range(args.repeats):
        with Timer(device) as bare, torch.inference_mode():
            for x in batches:
                encode(x).numpy()
        seconds["bare encoder"].append(bare.seconds)
        for w in args.workers:
            out = root / f"enc_{rep}_{w}.h5"
            with Timer(device) as t:
                encode_views(out, views, empty, encode, clip.embed_dim, {"fingerprint": "bench"}, "float16", 32, w)
            out.unlink()
            seconds[f"encode, {w} workers"].append(t.seconds)
        print(f"repetition {rep + 1}: " + ", ".join(f"{k} {v[-1]:.3g} s" for k, v in seconds.items()), flush=True)
    bare_median = statistics.median(seconds["bare encoder"])
    print("\n| path | min s | median s | max s | views / s (median) | bare / path (medians) |")
    print("|---|---|---|---|---|---|")
    for name, times in seconds.items():
        med = statistics.median(times)
        cells = [f"{x:.3g}" for x in (min(times), med, max(times))]
        cells += [f"{n_views / med:.0f}", f"{bare_median / med:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
