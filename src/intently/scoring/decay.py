"""How much of a signal's points are left at an age in whole days (0 = today).

`horizon` says how many days back a type can still give points, so the engine reads only
those rollup rows: linear and window give nothing from day N on; half-life and step
never reach 0, so they stop where the factor falls below 0.001 (a thousandth of the
points: below the 2-decimal rounding of any score under a cap of 100 points x 10),
and never look back more than MAX_HORIZON_DAYS.
"""

from __future__ import annotations

import math
from typing import Any

NEGLIGIBLE = 0.001
MAX_HORIZON_DAYS = 3650


def factor(decay: dict[str, Any], age: int) -> float:
    """The decay factor of a signal `age` whole days old (age < 0: not happened yet, 0)."""
    if age < 0:
        return 0.0
    kind = decay["kind"]
    days = decay["days"]
    if kind == "linear":
        return max(0.0, 1.0 - age / days)
    if kind == "half_life":
        return float(0.5 ** (age / days))
    if kind == "window":
        return 1.0 if age < days else 0.0
    if kind == "step":
        return float((1.0 - decay["percent"] / 100.0) ** (age // days))
    raise ValueError(f"unknown decay kind {kind!r}")


def horizon(decay: dict[str, Any]) -> int:
    """The number of days (ages 0 .. horizon-1) that can still give points."""
    kind = decay["kind"]
    days = int(decay["days"])
    if kind in ("linear", "window"):
        return min(days, MAX_HORIZON_DAYS)
    if kind == "half_life":
        # 0.5 ** (age / N) < 0.001 once age > N * log2(1000)
        return min(math.ceil(days * math.log2(1 / NEGLIGIBLE)) + 1, MAX_HORIZON_DAYS)
    if kind == "step":
        keep = 1.0 - decay["percent"] / 100.0
        if keep <= 0.0:
            return min(days, MAX_HORIZON_DAYS)
        if keep >= 1.0:
            return MAX_HORIZON_DAYS
        steps = math.floor(math.log(NEGLIGIBLE) / math.log(keep)) + 1  # first step below
        return min(steps * days, MAX_HORIZON_DAYS)
    raise ValueError(f"unknown decay kind {kind!r}")


def factors(decay: dict[str, Any]) -> list[float]:
    """factor(decay, age) for every age within the horizon."""
    return [factor(decay, age) for age in range(horizon(decay))]


# ---- the arithmetic of a score (the engine does the per-type part in SQL, the same way) ----


def type_points(
    increment: float, cap: float, decay: dict[str, Any], units_by_age: dict[int, float]
) -> float:
    """min(cap, increment x sum of units x factor(age)): one signal type's points."""
    decayed = sum(units * factor(decay, age) for age, units in units_by_age.items())
    return min(cap, increment * decayed)


def source_score(points: float, cap: float) -> float:
    """A source's sub-score: its types' points against the source's cap, 0 to 100."""
    if cap <= 0:
        return 0.0
    return min(cap, points) / cap * 100.0


def account_score(sub_scores: dict[str, float], weights: dict[str, float]) -> float:
    """The weighted mean of the sub-scores of the sources in `weights` (0 when none)."""
    total = sum(w for w in weights.values() if w > 0)
    if total <= 0:
        return 0.0
    return sum(sub_scores.get(s, 0.0) * w for s, w in weights.items() if w > 0) / total
