"""The summary every side-by-side benchmark prints: min / median / max per revision and the ratio of medians."""

from __future__ import annotations

import statistics


def print_summary(seconds: dict[str, list[float]], columns: dict[str, dict[str, object]] | None = None) -> None:
    """`seconds` maps each revision, the one timed first first, to its repetitions; `columns` adds a column per
    name, {name: {revision: value}}, before the times."""
    columns = columns or {}
    header = ["revision", *columns, "min s", "median s", "max s"]
    print("\n| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for rev, times in seconds.items():
        extra = [str(values[rev]) for values in columns.values()]
        cells = [rev, *extra, f"{min(times):.1f}", f"{statistics.median(times):.1f}", f"{max(times):.1f}"]
        print("| " + " | ".join(cells) + " |")
    before, after = seconds
    ratio = statistics.median(seconds[before]) / statistics.median(seconds[after])
    print(f"\nmedian {before} / median {after}: {ratio:.1f}x")
