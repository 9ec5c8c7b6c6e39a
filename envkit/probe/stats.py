"""Small statistics for timings. Percentiles use the nearest-rank method (no interpolation):
the p-th percentile of n sorted values is the value at rank ceil(p/100 * n), so it is always a
value that was actually measured."""

from __future__ import annotations

import math
from typing import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank p-th percentile (0 < p <= 100) of `values`; raises ValueError when empty."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median (mean of the middle two for an even count); raises ValueError when empty."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2.0


def relative_spread(values: Sequence[float]) -> float:
    """(max - min) / median of `values`: 0.0 for identical repetitions; raises ValueError when empty."""
    centre = median(values)
    if centre == 0:
        return 0.0
    return (max(values) - min(values)) / centre


def sample_stats(values: Sequence[float]) -> dict[str, float | int]:
    """{"median", "min", "max", "spread", "n"} of repeated measurements; raises ValueError when empty.

    spread is relative to the median: the interquartile range (nearest-rank p75 - p25) / median for 4
    or more samples, (max - min) / median below that; 0.0 when the median is 0."""
    centre = median(values)
    quartiles = len(values) >= 4
    width = percentile(values, 75) - percentile(values, 25) if quartiles else max(values) - min(values)
    return {
        "median": centre,
        "min": min(values),
        "max": max(values),
        "spread": width / centre if centre else 0.0,
        "n": len(values),
    }
