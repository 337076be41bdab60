"""Peak memory of heads training + evaluation on one generated feature file, in memory or streamed.

    python bench/memory_probe.py write FILE --images N     # a feature file of N training images (and N / 5 test)
    python bench/memory_probe.py run FILE --stream          # train one epoch and evaluate; prints one JSON line

`run` prints the process's resident memory after its imports, its peak after opening the file, training and
evaluating, and the file's image features as float32 (MB). bench/bench_memory.py and tests/test_streaming.py
run it in fresh processes, one per measurement, since a process's peak never goes down.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.features.run_features import SCHEMA, dataset_chunks, features_megabytes  # noqa: E402

WIDTH, VIEWS, CLASSES, BLOCK = 512, 2, 100, 4096


def write(path: Path, images: int, seed: int = 0) -> None:
    """A valid feature file with `images` training images of 2 x CLASSES classes' base half (float16, written
    block by block, so writing never holds the whole file) and images / 5 test images of both halves."""
    rng = np.random.default_rng(seed)
    proto = rng.standard_normal((2 * CLASSES, WIDTH)).astype(np.float32)
    proto /= np.linalg.norm(proto, axis=1, keepdims=True)
    tests = max(images // 5, 2 * CLASSES)
    train_label = np.arange(images) % CLASSES
    test_label = np.arange(tests) % (2 * CLASSES)

    def features(labels: np.ndarray, noise: float) -> np.ndarray:
        x = proto[labels] + noise * rng.standard_normal((len(labels), WIDTH)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)

    small = {
        "train/label": train_label,
        "test/label": test_label,
        "test/subset": (test_label >= CLASSES).astype(np.int64),
        "test/area": np.full(tests, 0.3),
        "test/has_fg": np.ones(tests, bool),
        "text/backbone": proto,
        "text/clip": proto,
    }
    with h5py.File(path, "w") as f:
        for key, value in small.items():
            f.create_dataset(key, data=value, fletcher32=True)
        for key, shape in (
            ("train/feat_full", (VIEWS, images, WIDTH)),
            ("train/feat_fg", (VIEWS, images, WIDTH)),
            ("test/feat", (tests, WIDTH)),
            ("test/feat_fg", (tests, WIDTH)),
        ):
            ds = f.create_dataset(key, shape=shape, dtype="float16", chunks=dataset_chunks(key, shape), fletcher32=True)
            labels = train_label if key.startswith("train/") else test_label
            for s in range(0, len(labels), BLOCK):
                block = features(labels[s : s + BLOCK], 1.0 if "full" in key or key == "test/feat" else 0.5)
                if ds.ndim == 3:
                    for v in range(VIEWS):
                        ds[v, s : s + BLOCK] = block
                else:
                    ds[s : s + BLOCK] = block
        area = f.create_dataset(
            "train/area",
            shape=(VIEWS, images),
            dtype="float64",
            chunks=dataset_chunks("train/area", (VIEWS, images)),
            fletcher32=True,
        )
        area[:] = 0.3
        f.attrs.update(
            classnames=json.dumps([f"c{i}" for i in range(2 * CLASSES)]),
            base=json.dumps(list(range(CLASSES))),
            new=json.dumps(list(range(CLASSES, 2 * CLASSES))),
            logit_scale=100.0,
            shares_clip_image=True,
            schema=SCHEMA,
        )


def rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(path: Path, stream: bool, shots: int = 4) -> dict:
    """One epoch of the heads on `shots` images per class, then the evaluation, as the heads stage runs them."""
    import torch

    from pipeline.features.run_features import RunFeatures
    from pipeline.heads.config import HeadsConfig
    from pipeline.heads.evaluate import evaluate
    from pipeline.heads.train import train_heads

    torch.set_num_threads(1)
    before = rss_mb()
    t0 = time.perf_counter()
    feats = RunFeatures(path, stream=stream)
    fraction = shots / (feats.n_train / CLASSES)
    model, _ = train_heads(feats, [HeadsConfig(epochs=1, shot_fraction=fraction)])
    metrics = evaluate(model, feats)[0]
    return {
        "stream": stream,
        "features_mb": round(features_megabytes(path), 1),
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "rss_imports_mb": round(before, 1),
        "rss_peak_mb": round(rss_mb(), 1),
        "seconds": round(time.perf_counter() - t0, 2),
        "fvgpt.base": metrics["fvgpt.base"],
        "gate.r_mean": metrics["gate.r_mean"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["write", "run"])
    parser.add_argument("file", type=Path)
    parser.add_argument("--images", type=int, default=10_000, help="training images (write)")
    parser.add_argument("--stream", action="store_true", help="stream the file instead of holding it (run)")
    args = parser.parse_args()
    if args.action == "write":
        write(args.file, args.images)
    else:
        print(json.dumps(run(args.file, args.stream)))


if __name__ == "__main__":
    main()
