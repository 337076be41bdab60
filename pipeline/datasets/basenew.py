"""Base/new class split of the base-to-new protocol."""

from __future__ import annotations

import math


def split_base_new(labels) -> tuple[list[int], list[int]]:
    """Sorted labels; the first ceil(n/2) are base, the rest new."""
    labels = sorted(set(int(x) for x in labels))
    m = math.ceil(len(labels) / 2)
    return labels[:m], labels[m:]


def relabel(labels: list[int]) -> dict[int, int]:
    """Original label -> index inside its half."""
    return {y: i for i, y in enumerate(labels)}
