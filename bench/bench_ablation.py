"""Time one heads ablation as a DVC experiment (`dvc exp run -S heads.<key>=<value>`) at two revisions.

Each revision gets its own clone sharing this repository's DVC cache; both are first brought up to date
with `dvc checkout` and `dvc repro` (untimed), then the ablation runs at each revision in turn,
interleaved, with a fresh value per repetition so DVC's run cache never answers in place of a run.
After each timed run the clone goes back to its baseline (git's files plus `dvc checkout`, or a repro
where the revision cannot restore without one; untimed).

    python bench/bench_ablation.py --before <old commit> --after HEAD --repeats 3

Prints the seconds of every repetition, min / median / max per revision, and the ratio of medians.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import tempfile
import time
from pathlib import Path

from _timing import print_summary

ROOT = Path(__file__).resolve().parents[1]


def sh(cwd: Path, *args: str, env: dict | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def clone(rev: str, where: Path) -> Path:
    sh(ROOT, "git", "clone", "-q", "--no-checkout", str(ROOT), str(where))
    sh(where, "git", "checkout", "-q", rev)
    sh(where, "dvc", "cache", "dir", "--local", str(ROOT / ".dvc" / "cache"))
    sh(where, "dvc", "config", "--local", "cache.type", "hardlink,copy")
    return where


def restore(repo: Path, env: dict) -> None:
    sh(repo, "git", "checkout", "-q", "--", ".")
    sh(repo, "dvc", "checkout", "-q", env=env)
    sh(repo, "dvc", "repro", env=env)  # a no-op where checkout restored everything


def timed_ablation(repo: Path, key: str, value: str, env: dict) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = sh(repo, "dvc", "exp", "run", "-S", f"{key}={value}", env=env)
    took = time.perf_counter() - t0
    cached = set(re.findall(r"Stage '([^']+)' is cached", out))
    if cached:
        raise SystemExit(f"DVC's run cache answered {sorted(cached)} for {key}={value}: give values no run used")
    return took, len(set(re.findall(r"Running stage '([^']+)'", out)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git revision timed first")
    parser.add_argument("--after", default="HEAD", help="git revision timed second")
    parser.add_argument("--key", default="heads.lambda_d", help="the heads key the ablation changes")
    parser.add_argument(
        "--values",
        default=None,
        help="one value per repetition, comma-separated; by default values no earlier run can have used (DVC's "
        "run cache, shared by every clone and every earlier benchmark, would answer in place of a run)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every stage process")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    fresh = random.Random(time.time_ns())
    values = (args.values or ",".join(f"{fresh.uniform(1, 9):.9f}" for _ in range(args.repeats))).split(",")
    values = values[: args.repeats]
    if len(values) < args.repeats:
        raise SystemExit(f"--values gives {len(values)} values for {args.repeats} repeats")
    seconds: dict[str, list[float]] = {args.before: [], args.after: []}
    stages_run: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench_ablation_") as tmp:
        repos = {rev: clone(rev, Path(tmp) / f"rev{i}") for i, rev in enumerate(seconds)}
        # Each clone's stages run its own code: `fvgpt` imports `stages` and `pipeline` from PYTHONPATH first.
        envs = {rev: {**env, "PYTHONPATH": str(repo)} for rev, repo in repos.items()}
        for rev, repo in repos.items():
            print(f"{rev}: bringing the clone up to date (untimed) ...", flush=True)
            restore(repo, envs[rev])  # outputs from the cache first: a stage with an uncached output re-runs
        for value in values:
            for rev, repo in repos.items():
                took, stages = timed_ablation(repo, args.key, value, envs[rev])
                seconds[rev].append(took)
                stages_run[rev] = stages
                print(f"{rev}: {args.key}={value}: {took:.1f} s, {stages} stages run", flush=True)
                restore(repo, envs[rev])
    print_summary(seconds, {"stages run": stages_run})


if __name__ == "__main__":
    main()
