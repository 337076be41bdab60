"""Peak resident memory of the heads (one epoch) + evaluation against the feature file's size, in memory and
streamed from disk (`runtime.features_memory_mb`).

    python bench/bench_memory.py                       # 10k, 40k, 160k, 320k training images
    python bench/bench_memory.py --images 10000 40000  # other sizes

Each measurement is a fresh process (bench/memory_probe.py), since a process's peak never goes down; memory
is the peak minus the process's resident memory after its imports. Files are written to a temporary folder
(about 4.4 KB per training image) and deleted after.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = Path(__file__).with_name("memory_probe.py")


def probe(*args: str) -> dict | None:
    out = subprocess.run([sys.executable, str(PROBE), *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[10_000, 40_000, 160_000, 320_000])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for images in args.images:
            path = Path(tmp) / f"features_{images}.h5"
            probe("write", str(path), "--images", str(images))
            for stream in (False, True):
                r = probe("run", str(path), *(["--stream"] if stream else []))
                rows.append({"images": images, **r, "memory_mb": round(r["rss_peak_mb"] - r["rss_imports_mb"], 1)})
                print(json.dumps(rows[-1]), flush=True)
            path.unlink()
    print("\n| training images | file MB | image features as float32, MB | mode | peak memory MB | seconds |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        mode = "streamed" if r["stream"] else "in memory"
        print(f"| {r['images']:,} | {r['file_mb']} | {r['features_mb']} | {mode} | {r['memory_mb']} | {r['seconds']} |")


if __name__ == "__main__":
    main()
