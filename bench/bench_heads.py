"""A heads epoch on the cache against an epoch of online FVG-PT, one configuration and three seeds stacked,
interleaved repetitions on the stage code path.

    python bench/bench_heads.py --model ViT-B-16 --repeats 3   # 2 CPU cores: about 5 minutes
    python bench/bench_heads.py --quick                        # the tiny CLIP

Online: what online FVG-PT runs every step: decode and augment a batch of 4 training images, the image encoder
on their full and foreground views, the class features from the text encoder (a prompted backbone recomputes
them each step), then the heads, their losses, backward and the update. It is timed over `--online-steps`
steps per repetition (after one untimed step) and scaled to an epoch of the same steps as the cache's.
Cached: `train_heads` on feature files as the features stage writes them (random unit features of the
encoder's width: the cost does not depend on the values), one configuration, and the three seeds' files
stacked in one training as the heads stage trains them (the cost per configuration is a third of it).
Repetitions interleave the three loops, so a slower minute of the machine slows all of them.
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

from _setup import Timer, clip_model, dataset, masks_for, random_feature_file, workdir  # noqa: E402
from bench_pipeline import online_epochs  # noqa: E402

from pipeline.backbones import template_features  # noqa: E402
from pipeline.datasets.basenew import split_base_new  # noqa: E402
from pipeline.features.encoder import image_encoder  # noqa: E402
from pipeline.features.run_features import RunFeatures  # noqa: E402
from pipeline.features.views_dataset import ImageViews  # noqa: E402
from pipeline.heads.config import HeadsConfig  # noqa: E402
from pipeline.heads.train import train_heads  # noqa: E402

SEEDS = (1, 2, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--quick", action="store_true", help="the tiny CLIP (fvgpt-tiny-rn) instead of --model")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--online-steps", type=int, default=6, help="online steps timed per repetition")
    ap.add_argument("--epochs", type=int, default=10, help="cached epochs timed per repetition")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = "fvgpt-tiny-rn" if args.quick else args.model
    clip = clip_model(model, device)
    root = workdir()
    data = dataset(root / "data", (8, 5), 16, clip.image_size)
    store = masks_for(data, root / "masks.h5", clip.image_size)
    base, new = split_base_new(it.label for it in data.train)
    train_items = [it for it in data.train if it.label in base]
    labels = [base.index(it.label) for it in train_items]
    names = data.classnames
    base_names = [names[b] for b in base]
    cfg = HeadsConfig(epochs=args.epochs)
    steps_per_epoch = -(-len(labels) // cfg.batch_size)
    encode = image_encoder(clip.model.encode_image, device, "bf16", False, 256)
    online_data = ImageViews(
        data.root, [it.impath for it in train_items], store, clip.image_size, clip.mean, clip.std, views=1, train=True
    )
    g = template_features(clip, "a photo of a {}.", base_names, device)
    text = lambda: (template_features(clip, "a photo of a {}.", base_names, device),) * 2  # noqa: E731
    files = [
        RunFeatures(
            random_feature_file(
                root / f"seed{s}.h5", labels, len(names), clip.embed_dim, args.epochs, clip.logit_scale, seed=s
            )
        )
        for s in SEEDS
    ]
    print(
        f"# heads: cached vs online, {model} on CPU ({args.threads} threads), {len(base)} base classes x 16 shots, "
        f"batch 4 ({steps_per_epoch} steps per epoch), {args.repeats} interleaved repetitions, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    seconds: dict[str, list[float]] = {"online": [], "cached, one configuration": [], "cached, 3 seeds stacked": []}
    for rep in range(args.repeats):
        online = online_epochs(clip, encode, online_data, labels, g, g, cfg, device, 0, args.online_steps, text)
        seconds["online"].append(online / args.online_steps * steps_per_epoch)
        with Timer(device) as one:
            train_heads(files[0], [cfg])
        seconds["cached, one configuration"].append(one.seconds / args.epochs)
        with Timer(device) as stacked:
            train_heads(files, [cfg.with_(seed=s) for s in SEEDS])
        seconds["cached, 3 seeds stacked"].append(stacked.seconds / args.epochs)
        print(f"repetition {rep + 1}: " + ", ".join(f"{k} {v[-1]:.4g} s/epoch" for k, v in seconds.items()), flush=True)
    online_median = statistics.median(seconds["online"])
    header = ["loop", "min s / epoch", "median s / epoch", "max s / epoch", "configurations", "online / cached"]
    print("\n| " + " | ".join(header) + " |")
    print("|---|---|---|---|---|---|")
    for name, times in seconds.items():
        k = len(SEEDS) if "stacked" in name else 1
        ratio = online_median / (statistics.median(times) / k)  # per configuration, of the medians
        cells = [f"{min(times):.4g}", f"{statistics.median(times):.4g}", f"{max(times):.4g}", str(k), f"{ratio:.0f}x"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    each = [o / (c / len(SEEDS)) for o, c in zip(seconds["online"], seconds["cached, 3 seeds stacked"])]
    single = [o / c for o, c in zip(seconds["online"], seconds["cached, one configuration"])]
    print(
        f"\nper repetition, online / cached: one configuration {', '.join(f'{r:.0f}x' for r in single)}; "
        f"per configuration with 3 seeds stacked {', '.join(f'{r:.0f}x' for r in each)}"
    )


if __name__ == "__main__":
    main()
