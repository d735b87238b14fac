"""How a set of 0-100 scores reads in a dry run: the one summary both the scoring model's
and the ICP fit model's dry runs show, so their reports and charts compare alike."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any


def distribution(values: list[float]) -> dict[str, Any]:
    """Count, mean, median, 90th percentile and ten 10-point buckets (100 in the last)."""
    if not values:
        return {"accounts": 0, "mean": None, "median": None, "p90": None, "buckets": []}
    ordered = sorted(values)
    counts = Counter(min(int(v // 10), 9) for v in ordered)
    return {
        "accounts": len(ordered),
        "mean": round(statistics.fmean(ordered), 2),
        "median": round(statistics.median(ordered), 2),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2),
        "buckets": [
            {"from": lo, "to": lo + 10, "accounts": counts.get(lo // 10, 0)}
            for lo in range(0, 100, 10)
        ],
    }
