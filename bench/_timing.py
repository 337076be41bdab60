"""The summary every side-by-side benchmark prints: min / median / max per revision and the ratio of medians."""

from __future__ import annotations

import statistics


def print_summary(
    seconds: dict[str, list[float]], columns: dict[str, dict[str, object]] | None = None, digits: int = 1
) -> None:
    """`seconds` maps each revision, the one timed first first, to its repetitions; `columns` adds a column per
    name, {name: {revision: value}}, before the times; `digits` after the point."""
    columns = columns or {}
    header = ["revision", *columns, "min s", "median s", "max s"]
    print("\n| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for rev, times in seconds.items():
        extra = [str(values[rev]) for values in columns.values()]
        cells = [rev, *extra, *(f"{t:.{digits}f}" for t in (min(times), statistics.median(times), max(times)))]
        print("| " + " | ".join(cells) + " |")
    before, after = seconds
    ratio = statistics.median(seconds[before]) / statistics.median(seconds[after])
    print(f"\nmedian {before} / median {after}: {ratio:.1f}x")
