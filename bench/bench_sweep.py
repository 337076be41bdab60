"""Time one `fvgpt sweep` (many heads configurations x seeds, stacked) at two revisions, interleaved.

Each revision's code runs from its own git worktree (PYTHONPATH), on this checkout's cached features, so
only the code differs. Run `dvc repro` first (the sweep reads data/features/<dataset>/<backbone>/).

    python bench/bench_sweep.py --before <old commit> --after HEAD --repeats 2

Prints the seconds of every repetition, min / median / max per revision, and the ratio of medians.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from _timing import print_summary

ROOT = Path(__file__).resolve().parents[1]
GRID = "lambda_d=1,2,3,4,5,6,7,8,9,10 tau_d=1,1.5,2,2.5,3,3.5,4,4.5,5,5.5"  # 100 configurations


def timed_sweep(tree: Path, args, env: dict) -> float:
    command = ["fvgpt", "sweep", args.dataset, args.backbone, "--grid", args.grid, "--seeds", args.seeds]
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env={**env, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if done.returncode:
        output = done.stdout[-2000:] + done.stderr[-2000:]
        raise SystemExit(f"{' '.join(command)} failed with the code of {tree}:\n{output}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git revision timed first")
    parser.add_argument("--after", default="HEAD", help="git revision timed second")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--backbone", default="coop")
    parser.add_argument("--grid", default=GRID, help="the sweep's --grid (default: 100 configurations)")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the sweep")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    seconds: dict[str, list[float]] = {args.before: [], args.after: []}
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        trees = {}
        for i, rev in enumerate(seconds):
            trees[rev] = Path(tmp) / f"rev{i}"
            subprocess.run(["git", "worktree", "add", "-q", "--detach", str(trees[rev]), rev], cwd=ROOT, check=True)
        try:
            for repeat in range(args.repeats):
                for rev, tree in trees.items():
                    seconds[rev].append(timed_sweep(tree, args, env))
                    print(f"{rev}: repetition {repeat + 1}: {seconds[rev][-1]:.1f} s", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    print_summary(seconds)


if __name__ == "__main__":
    main()
