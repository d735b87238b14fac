"""The words a rule is made of: account fields, operators, the names a signal, deal or
activity condition takes, the language's limits, and the parameters every evaluation
reads (surge, deal stages, as of), with the helpers both evaluators share.

What each word means is written in `intently.rules.language`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

from intently.catalog import ALL_SCORES, FIT_SCORE, GRADE
from intently.kit.timefmt import US_PER_DAY

# What one rule document may hold (docs/deploy.md "Limits on rules"). Every rule is one
# SQL expression over every account: these keep it inside SQLite's limits (an expression
# at most 1000 deep: a flat `all` of N conditions is N deep; at most 32766 parameters a
# statement) with a wide margin, and its cost near a realistic rule's (the default stage
# list holds 6 conditions in its largest rule). parse_rule refuses a rule beyond them.
MAX_DEPTH = 10  # levels of nesting: all, any, not and the leaf
MAX_WINDOW_DAYS = 3650  # days in one window
MAX_LIST = 1000  # values in one `in` / `not_in` list
MAX_VALUES = 5000  # values in all the rule's lists together
MAX_CONDITIONS = 200  # leaves
# Signal, surge, deal and activity leaves read related rows for every account (a
# correlated subquery each): a preview with 500 of them ran 148 s. They count apart.
MAX_RELATED_CONDITIONS = 50
_EPOCH_DATE = date(1970, 1, 1)

# Built-in account fields: rule name -> (accounts column, kind).
BUILTIN_FIELDS: dict[str, tuple[str, str]] = {
    "domain": ("domain", "text"),
    "name": ("name", "text"),
    "externalId": ("external_id", "text"),
    "shortName": ("short_name", "text"),
    "linkedinUrl": ("linkedin_url", "text"),
    "tags": ("tags", "multi"),
    # The company profile (NULL where unknown: such an account matches no comparison).
    "industry": ("industry", "text"),
    "employeeCount": ("employee_count", "number"),
    "annualRevenue": ("annual_revenue", "number"),
    "country": ("country", "text"),
    "city": ("city", "text"),
    "logoUrl": ("logo_url", "text"),
    **{score: (score, "number") for score in ALL_SCORES},
    FIT_SCORE: (FIT_SCORE, "number"),
    GRADE: (GRADE, "text"),
    "rtp_journey_stage": ("rtp_journey_stage", "text"),
    "createdAt": ("created_at", "date"),
}
CUSTOM_PREFIX = "customFields."

# Custom field label types -> kinds. `auto` is a custom field whose type the parser was
# not told: `contains` then matches a string containing the value or an array holding it,
# and `exists` any value but null and the empty array.
LABEL_KINDS = {
    "number": "number",
    "date": "date",
    "singleLineText": "text",
    "multiLineText": "text",
    "singleSelection": "text",
    "multiSelection": "multi",
}

NUMERIC_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "between")
# The comparisons both evaluators apply as they are: to Python values in memory, to
# column expressions in SQL (`between` is built from two of them).
COMPARE: dict[str, Any] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
OPS_BY_KIND: dict[str, tuple[str, ...]] = {
    "number": (*NUMERIC_OPS, "in", "not_in", "exists", "missing"),
    "text": (
        *("eq", "ne", "in", "not_in", "contains", "not_contains", "starts_with"),
        *("exists", "missing"),
    ),
    "date": ("eq", "ne", "gt", "gte", "lt", "lte", "between", "within_days", "exists", "missing"),
    "multi": ("contains", "not_contains", "in", "not_in", "exists", "missing"),
    "auto": ("contains", "not_contains", "exists", "missing"),
}
ALL_OPS = (
    *("eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in"),
    *("contains", "not_contains", "starts_with", "exists", "missing", "within_days"),
)
NEGATIVE = {"ne": "eq", "not_in": "in", "not_contains": "contains", "missing": "exists"}

DEAL_STATUSES = ("open", "won", "lost", "any")
ACTIVITY_TYPES = ("call", "email", "any")
MEASURES = ("count", "value")

_DATE_PREFIX = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


# ---------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class SurgeParams:
    """Recent activity against its own baseline (spec "Surge")."""

    recent_days: int = 7
    baseline_days: int = 28
    min_recent: int = 3
    ratio: float = 2.0

    def ratio_fraction(self) -> Fraction:
        # Exact and small: 2.0 -> 2, 1.1 -> 11/10, so SQL can compare in integers.
        return Fraction(repr(float(self.ratio))).limit_denominator(1_000_000)


@dataclass(frozen=True)
class DealStageMap:
    """How a deal's stage label reads as open, won or lost.

    `exact` labels (ASCII case ignored) are checked first; then a label containing any of
    `won` is won, then one containing any of `lost` is lost; everything else (and no
    label) is open. Won is checked before lost, so "Closed Won" is won.
    """

    exact: tuple[tuple[str, str], ...] = ()
    won: tuple[str, ...] = ("won",)
    lost: tuple[str, ...] = ("lost",)

    @classmethod
    def of(cls, labels: Mapping[str, str]) -> DealStageMap:
        """A map with these exact labels (label -> open | won | lost) before the defaults."""
        for label, status in labels.items():
            if status not in ("open", "won", "lost"):
                raise ValueError(f"stage {label!r}: status must be open, won or lost")
        return cls(exact=tuple((k, v) for k, v in labels.items()))


DEFAULT_DEAL_STAGES = DealStageMap()


@dataclass(frozen=True)
class Context:
    as_of: int  # micros UTC; windows end here (a backtest passes a past date)
    deal_stages: DealStageMap = DEFAULT_DEAL_STAGES
    surge: SurgeParams = SurgeParams()

    @property
    def as_of_day(self) -> int:
        return self.as_of // US_PER_DAY


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only: what SQLite's lower() does, so SQL can agree."""
    return text.translate(_ASCII_LOWER)


def deal_status(label: str | None, stages: DealStageMap) -> str:
    """open | won | lost for a deal's stage label."""
    if label is None:
        return "open"
    low = ascii_lower(label)
    for known, status in stages.exact:
        if ascii_lower(known) == low:
            return status
    if any(ascii_lower(w) in low for w in stages.won):
        return "won"
    if any(ascii_lower(w) in low for w in stages.lost):
        return "lost"
    return "open"


def is_surging(recent: int, baseline: int, p: SurgeParams) -> bool:
    """At least min_recent recent signals, and a daily rate at least `ratio` times the
    baseline's (an empty baseline counts as one signal): in exact integer arithmetic."""
    r = p.ratio_fraction()
    return (
        recent >= p.min_recent
        and recent * p.baseline_days * r.denominator
        >= r.numerator * p.recent_days * max(baseline, 1)
    )


def day_of_date(d: date) -> int:
    return (d - _EPOCH_DATE).days


def date_text(day: int) -> str:
    return date.fromordinal(_EPOCH_DATE.toordinal() + day).isoformat()


def stored_date(value: Any) -> str | None:
    """A date custom field's stored value as `YYYY-MM-DD`, or None when it is not one."""
    if isinstance(value, str) and _DATE_PREFIX.match(value):
        return value[:10]
    return None
