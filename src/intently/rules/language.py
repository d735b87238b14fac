"""The rule language of stages and dynamic segments: its tree, validation and parameters.

A rule is a JSON tree (spec "Rule language"). `parse_rule` checks a document and names
every problem with its path; `rule_doc` gives the canonical document back. The meaning
of each leaf is defined once here and implemented twice, in `memory.py` (one account)
and `sql.py` (every account in one query); the equivalence test holds them together.

Semantics shared by both evaluators:
- Windows are whole UTC days ending with as_of's day: `window_days` N covers the days
  (as_of_day - N, as_of_day], so a signal exactly N days old is out, one N - 1 days old
  is in. Activities and deals carry instants, so their windows are (as_of - N days, as_of]
  and nothing after as_of counts (a backtest sees only the past).
- A missing value (null column, absent custom field key, JSON null, or a stored value not
  of the field's type) satisfies no positive operator. Each negative operator is exactly
  the negation of its positive one (`ne` = not `eq`, `not_in` = not `in`, `not_contains`
  = not `contains`, `missing` = not `exists`), so a missing value satisfies `ne`,
  `not_in`, `not_contains` and `missing`.
- Text compares by code points (binary collation), case-sensitively, in Python, SQLite
  and PostgreSQL alike; text has no ordering operators, so no collation ever matters.
- Dates compare as calendar days. `createdAt` is its UTC day; a date custom field is the
  `YYYY-MM-DD` it starts with as written (a value in another ISO 8601 form, such as
  `20260105`, counts as missing); a rule's date value is its date as written.
- Numbers compare as IEEE doubles everywhere. A `"measure": "value"` signal sum adds
  doubles, so it is exact (and the same everywhere) for integers and binary fractions;
  sums of other decimals may differ in the last bit between engines.
- Surge (per source, optionally one type): `recent` = signal count over the last
  `recent_days` days, `baseline` = count over the `baseline_days` days before those;
  see `is_surging`.
- Deals count when created (start date, else first push) at or before as_of; their
  status is `deal_status(stage_label)` with today's label (the CRM keeps no history).
- A custom field's type is its definition's when `parse_rule` is given the workspace's
  definitions; otherwise it is inferred from the operator and value (`_infer_kind`).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction
from typing import Any, TypeAlias

from intently.kit.errors import ValidationFailed

US_PER_DAY = 86_400_000_000
MAX_DEPTH = 10
MAX_WINDOW_DAYS = 3650
MAX_LIST = 1000
_EPOCH_DATE = date(1970, 1, 1)

# Built-in account fields: rule name -> (accounts column, kind).
BUILTIN_FIELDS: dict[str, tuple[str, str]] = {
    "domain": ("domain", "text"),
    "name": ("name", "text"),
    "externalId": ("external_id", "text"),
    "shortName": ("short_name", "text"),
    "linkedinUrl": ("linkedin_url", "text"),
    "tags": ("tags", "multi"),
    "rtp_account_score": ("rtp_account_score", "number"),
    "rtp_website_intent_score": ("rtp_website_intent_score", "number"),
    "rtp_bombora_intent_score": ("rtp_bombora_intent_score", "number"),
    "rtp_g2_intent_score": ("rtp_g2_intent_score", "number"),
    "rtp_advertising_activity_score": ("rtp_advertising_activity_score", "number"),
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


# ---------------------------------------------------------------------------------------
# The tree


@dataclass(frozen=True)
class All:
    items: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    item: Rule


@dataclass(frozen=True)
class FieldLeaf:
    """`{"field", "op", "value"}`. `value` is normalised: numbers are floats, dates are
    `YYYY-MM-DD` text, lists are tuples, and exists/missing have None."""

    field: str
    op: str
    value: Any
    kind: str  # number | text | date | multi | auto

    @property
    def custom_key(self) -> str | None:
        return self.field[len(CUSTOM_PREFIX) :] if self.field.startswith(CUSTOM_PREFIX) else None


@dataclass(frozen=True)
class NumCmp:
    """A numeric comparison: op in NUMERIC_OPS; `between` has a (low, high) pair."""

    op: str
    value: Any


@dataclass(frozen=True)
class SignalLeaf:
    source: str
    type: str | None
    topic: str | None
    window_days: int
    measure: str  # count | value
    cmp: NumCmp


@dataclass(frozen=True)
class SurgeLeaf:
    source: str
    type: str | None
    value: bool  # `{"op": "ne", "value": true}` is stored as value False


@dataclass(frozen=True)
class DealLeaf:
    status: str  # open | won | lost | any
    amount: NumCmp | None
    within_days: int | None
    cmp: NumCmp  # on the number of such deals; no op given = gte 1


@dataclass(frozen=True)
class ActivityLeaf:
    type: str  # call | email | any
    window_days: int
    cmp: NumCmp


Rule: TypeAlias = All | AnyOf | Not | FieldLeaf | SignalLeaf | SurgeLeaf | DealLeaf | ActivityLeaf

LEAF_KEYS = ("field", "signal", "surge", "deal", "activity")


# ---------------------------------------------------------------------------------------
# Parsing


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, path: str, rule: str, text: str) -> None:
        parts = [p for p in path.split(".") if not p.isdigit()]
        prop = parts[-1] if parts else path
        for item in self.items:
            if item["path"] == path:
                item["constraints"].setdefault(rule, text)
                return
        self.items.append({"property": prop, "path": path, "constraints": {rule: text}})


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return _is_number(v) and float(v).is_integer()


def parse_rule(
    doc: Any, *, path: str = "rule", custom_fields: Mapping[str, str] | None = None
) -> Rule:
    """Check a rule document and build its tree, or raise ValidationFailed naming every
    problem. `custom_fields` (key -> labelType, e.g. from `custom_field_types`) types the
    `customFields.KEY` leaves and rejects unknown keys; without it a custom field's type
    is inferred from the operator and value (see `_infer_kind`)."""
    problems = _Problems()
    rule = _parse(doc, path, 1, problems, custom_fields)
    if problems.items or rule is None:
        raise ValidationFailed(problems.items or [_whole(path)])
    return rule


def _shown(value: Any) -> str:
    """A value sent, as an error message quotes it."""
    return f"'{value}'" if isinstance(value, str) else repr(value)


def _whole(path: str) -> dict[str, Any]:
    return {"property": path, "path": path, "constraints": {"isRule": f"{path} is invalid"}}


def _parse(
    doc: Any, path: str, depth: int, pr: _Problems, cf: Mapping[str, str] | None
) -> Rule | None:
    if depth > MAX_DEPTH:
        pr.add(path, "maxDepth", f"rules must not nest deeper than {MAX_DEPTH} levels")
        return None
    if not isinstance(doc, dict):
        pr.add(path, "isObject", f"{_prop(path)} must be an object")
        return None
    kinds = [k for k in ("all", "any", "not", *LEAF_KEYS) if k in doc]
    if len(kinds) != 1:
        if not kinds:
            pr.add(
                path,
                "isRule",
                f"{_prop(path)} must have exactly one of all, any, not, field, signal, surge, "
                "deal, activity",
            )
        else:
            pr.add(path, "isRule", f"{_prop(path)} must not combine {', '.join(kinds)}")
        return None
    kind = kinds[0]
    if kind in ("all", "any", "not"):
        for extra in doc:
            if extra != kind:
                pr.add(
                    f"{path}.{extra}", "whitelistValidation", f"property {extra} should not exist"
                )
        sub = doc[kind]
        if kind == "not":
            item = _parse(sub, f"{path}.not", depth + 1, pr, cf)
            return Not(item) if item is not None else None
        if not isinstance(sub, list):
            pr.add(f"{path}.{kind}", "isArray", f"{kind} must be an array")
            return None
        items = [_parse(s, f"{path}.{kind}.{i}", depth + 1, pr, cf) for i, s in enumerate(sub)]
        if any(i is None for i in items):
            return None
        done = tuple(i for i in items if i is not None)
        return All(done) if kind == "all" else AnyOf(done)
    parser = {
        "field": _parse_field,
        "signal": _parse_signal,
        "surge": _parse_surge,
        "deal": _parse_deal,
        "activity": _parse_activity,
    }[kind]
    before = len(pr.items)
    leaf = parser(doc, path, pr, cf)
    return leaf if len(pr.items) == before else None


def _prop(path: str) -> str:
    parts = [p for p in path.split(".") if not p.isdigit()]
    return parts[-1] if parts else path


def _allowed(doc: dict[str, Any], path: str, keys: tuple[str, ...], pr: _Problems) -> None:
    for k in doc:
        if k not in keys:
            pr.add(f"{path}.{k}", "whitelistValidation", f"property {k} should not exist")


def _window(doc: dict[str, Any], key: str, path: str, pr: _Problems, required: bool) -> int | None:
    v = doc.get(key)
    p = f"{path}.{key}"
    if v is None:
        if required:
            pr.add(p, "isNotEmpty", f"{key} should not be empty")
        return None
    if not _is_int(v):
        pr.add(p, "isInt", f"{key} must be an integer number")
        return None
    n = int(v)
    if n < 1:
        pr.add(p, "min", f"{key} must not be less than 1")
    elif n > MAX_WINDOW_DAYS:
        pr.add(p, "max", f"{key} must not be greater than {MAX_WINDOW_DAYS}")
    return n


def _name(doc: dict[str, Any], key: str, path: str, pr: _Problems, required: bool) -> str | None:
    v = doc.get(key)
    p = f"{path}.{key}"
    if v is None:
        if required:
            pr.add(p, "isNotEmpty", f"{key} should not be empty")
        return None
    if not isinstance(v, str):
        pr.add(p, "isString", f"{key} must be a string")
        return None
    if required and not v.strip():
        pr.add(p, "isNotEmpty", f"{key} should not be empty")
    return v


def _numcmp(
    doc: dict[str, Any], path: str, pr: _Problems, *, default: NumCmp | None = None
) -> NumCmp | None:
    op, value = doc.get("op"), doc.get("value")
    if op is None and value is None and default is not None:
        return default
    if op is None:
        pr.add(f"{path}.op", "isNotEmpty", "op should not be empty")
        return None
    if op not in NUMERIC_OPS:
        pr.add(
            f"{path}.op",
            "isIn",
            f"op must be one of the following values: {', '.join(NUMERIC_OPS)}; got {_shown(op)}",
        )
        return None
    return _numvalue(op, value, f"{path}.value", pr)


def _numvalue(op: str, value: Any, p: str, pr: _Problems) -> NumCmp | None:
    if op == "between":
        if not (isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))):
            pr.add(p, "isNumberPair", "value must be an array of two numbers [low, high]")
            return None
        lo, hi = float(value[0]), float(value[1])
        if lo > hi:
            pr.add(p, "isOrdered", "value must have its low bound first")
            return None
        return NumCmp(op, (lo, hi))
    if not _is_number(value):
        if value is None:
            pr.add(p, "isNotEmpty", "value should not be empty")
        else:
            pr.add(p, "isNumber", "value must be a number conforming to the specified constraints")
        return None
    return NumCmp(op, float(value))


def _parse_field(
    doc: dict[str, Any], path: str, pr: _Problems, cf: Mapping[str, str] | None
) -> FieldLeaf | None:
    _allowed(doc, path, ("field", "op", "value"), pr)
    name, op, value = doc.get("field"), doc.get("op"), doc.get("value")
    kind: str | None = None
    fp = f"{path}.field"
    if not isinstance(name, str):
        pr.add(fp, "isString", "field must be a string")
    elif name in BUILTIN_FIELDS:
        kind = BUILTIN_FIELDS[name][1]
    elif name.startswith(CUSTOM_PREFIX) and name[len(CUSTOM_PREFIX) :]:
        key = name[len(CUSTOM_PREFIX) :]
        if cf is not None:
            if key not in cf:
                pr.add(fp, "isKnownField", f"custom field '{key}' does not exist or is not active")
            else:
                kind = LABEL_KINDS.get(cf[key], "text")
        elif isinstance(op, str):
            kind = _infer_kind(op, value)
    else:
        pr.add(
            fp,
            "isKnownField",
            f"field must be one of {', '.join(BUILTIN_FIELDS)} or customFields.KEY; "
            f"got {_shown(name)}",
        )
    op_path = f"{path}.op"
    if op is None:
        pr.add(op_path, "isNotEmpty", "op should not be empty")
        return None
    if op not in ALL_OPS:
        pr.add(
            op_path,
            "isIn",
            f"op must be one of the following values: {', '.join(ALL_OPS)}; got {_shown(op)}",
        )
        return None
    if kind is None:
        return None
    if op not in OPS_BY_KIND[kind]:
        pr.add(
            op_path,
            "isValidOp",
            f"op {op} does not apply to {kind} field {name}; use one of "
            + ", ".join(OPS_BY_KIND[kind]),
        )
        return None
    assert isinstance(name, str)
    norm = _field_value(kind, op, value, f"{path}.value", pr)
    if norm is _BAD:
        return None
    return FieldLeaf(name, op, norm, kind)


_BAD = object()


def _infer_kind(op: str, value: Any) -> str:
    """A custom field's kind when the parser was not given the workspace's definitions."""
    vals = value if isinstance(value, list) else [value]
    if op == "within_days":
        return "date"
    if vals and all(_is_number(v) for v in vals):
        return "number"
    if op in ("gt", "gte", "lt", "lte", "between"):
        return "date"
    if op in ("contains", "not_contains", "exists", "missing"):
        return "auto"
    return "text"


def _iso_date(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    text = v.strip()
    if len(text) < 4 or not text[:4].isdigit():
        return None
    try:
        return datetime.fromisoformat(text).date().isoformat()
    except ValueError:
        return None


def _field_value(kind: str, op: str, value: Any, p: str, pr: _Problems) -> Any:
    if op in ("exists", "missing"):
        if value is not None:
            pr.add(p, "isEmpty", f"value must not be given with {op}")
            return _BAD
        return None
    if value is None:
        pr.add(p, "isNotEmpty", "value should not be empty")
        return _BAD
    if op == "within_days":
        if not _is_int(value):
            pr.add(p, "isInt", "value must be an integer number")
            return _BAD
        n = int(value)
        if not 1 <= n <= MAX_WINDOW_DAYS:
            pr.add(p, "isInRange", f"value must be between 1 and {MAX_WINDOW_DAYS} days")
            return _BAD
        return n
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            pr.add(p, "isArray", "value must be a non-empty array")
            return _BAD
        if len(value) > MAX_LIST:
            pr.add(p, "arrayMaxSize", f"value must contain no more than {MAX_LIST} elements")
            return _BAD
        scalars = [_scalar(kind, v) for v in value]
        if any(s is _BAD for s in scalars):
            pr.add(p, _scalar_rule(kind), f"each value in value {_scalar_text(kind)}")
            return _BAD
        return tuple(scalars)
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            pr.add(p, "isPair", "value must be an array of two values [low, high]")
            return _BAD
        lo, hi = _scalar(kind, value[0]), _scalar(kind, value[1])
        if lo is _BAD or hi is _BAD:
            pr.add(p, _scalar_rule(kind), f"each value in value {_scalar_text(kind)}")
            return _BAD
        if lo > hi:
            pr.add(p, "isOrdered", "value must have its low bound first")
            return _BAD
        return (lo, hi)
    s = _scalar(kind, value)
    if s is _BAD:
        pr.add(p, _scalar_rule(kind), f"value {_scalar_text(kind)}")
        return _BAD
    return s


def _scalar(kind: str, v: Any) -> Any:
    if kind == "number":
        return float(v) if _is_number(v) else _BAD
    if kind == "date":
        d = _iso_date(v)
        return d if d is not None else _BAD
    return v if isinstance(v, str) else _BAD


def _scalar_rule(kind: str) -> str:
    return {"number": "isNumber", "date": "isISO8601"}.get(kind, "isString")


def _scalar_text(kind: str) -> str:
    return {
        "number": "must be a number conforming to the specified constraints",
        "date": "must be a valid ISO 8601 date string",
    }.get(kind, "must be a string")


def _parse_signal(
    doc: dict[str, Any], path: str, pr: _Problems, cf: Mapping[str, str] | None
) -> SignalLeaf | None:
    _allowed(doc, path, ("signal", "window_days", "measure", "op", "value"), pr)
    spec = doc["signal"]
    sp = f"{path}.signal"
    source = type_ = topic = None
    if not isinstance(spec, dict):
        pr.add(sp, "isObject", "signal must be an object")
    else:
        _allowed(spec, sp, ("source", "type", "topic"), pr)
        source = _name(spec, "source", sp, pr, True)
        type_ = _name(spec, "type", sp, pr, False)
        topic = _name(spec, "topic", sp, pr, False)
    window = _window(doc, "window_days", path, pr, True)
    measure = doc.get("measure", "count")
    if measure not in MEASURES:
        pr.add(
            f"{path}.measure", "isIn", "measure must be one of the following values: count, value"
        )
    cmp = _numcmp(doc, path, pr)
    if source is None or window is None or cmp is None:
        return None
    return SignalLeaf(source, type_, topic, window, measure, cmp)


def _parse_surge(
    doc: dict[str, Any], path: str, pr: _Problems, cf: Mapping[str, str] | None
) -> SurgeLeaf | None:
    _allowed(doc, path, ("surge", "op", "value"), pr)
    spec = doc["surge"]
    sp = f"{path}.surge"
    source = type_ = None
    if not isinstance(spec, dict):
        pr.add(sp, "isObject", "surge must be an object")
    else:
        _allowed(spec, sp, ("source", "type"), pr)
        source = _name(spec, "source", sp, pr, True)
        type_ = _name(spec, "type", sp, pr, False)
    op, value = doc.get("op", "eq"), doc.get("value", True)
    if op not in ("eq", "ne"):
        pr.add(f"{path}.op", "isIn", "op must be one of the following values: eq, ne")
    if not isinstance(value, bool):
        pr.add(f"{path}.value", "isBoolean", "value must be a boolean value")
    if source is None or op not in ("eq", "ne") or not isinstance(value, bool):
        return None
    return SurgeLeaf(source, type_, value if op == "eq" else not value)


def _parse_deal(
    doc: dict[str, Any], path: str, pr: _Problems, cf: Mapping[str, str] | None
) -> DealLeaf | None:
    _allowed(doc, path, ("deal", "op", "value"), pr)
    spec = doc["deal"]
    sp = f"{path}.deal"
    if not isinstance(spec, dict):
        pr.add(sp, "isObject", "deal must be an object")
        _numcmp(doc, path, pr, default=NumCmp("gte", 1.0))
        return None
    _allowed(spec, sp, ("status", "amount", "within_days"), pr)
    status = spec.get("status", "any")
    if status not in DEAL_STATUSES:
        pr.add(
            f"{sp}.status",
            "isIn",
            f"status must be one of the following values: {', '.join(DEAL_STATUSES)}",
        )
    amount: NumCmp | None = None
    bad_amount = False
    if "amount" in spec:
        ap = f"{sp}.amount"
        if not isinstance(spec["amount"], dict):
            pr.add(ap, "isObject", "amount must be an object")
            bad_amount = True
        else:
            _allowed(spec["amount"], ap, ("op", "value"), pr)
            amount = _numcmp(spec["amount"], ap, pr)
            bad_amount = amount is None
    within = _window(spec, "within_days", sp, pr, False)
    bad_within = "within_days" in spec and within is None
    cmp = _numcmp(doc, path, pr, default=NumCmp("gte", 1.0))
    if status not in DEAL_STATUSES or bad_amount or bad_within or cmp is None:
        return None
    return DealLeaf(status, amount, within, cmp)


def _parse_activity(
    doc: dict[str, Any], path: str, pr: _Problems, cf: Mapping[str, str] | None
) -> ActivityLeaf | None:
    _allowed(doc, path, ("activity", "window_days", "op", "value"), pr)
    spec = doc["activity"]
    sp = f"{path}.activity"
    type_: Any = None
    if not isinstance(spec, dict):
        pr.add(sp, "isObject", "activity must be an object")
    else:
        _allowed(spec, sp, ("type",), pr)
        type_ = spec.get("type", "any")
        if type_ not in ACTIVITY_TYPES:
            pr.add(
                f"{sp}.type", "isIn", "type must be one of the following values: call, email, any"
            )
            type_ = None
    window = _window(doc, "window_days", path, pr, True)
    cmp = _numcmp(doc, path, pr)
    if type_ is None or window is None or cmp is None:
        return None
    return ActivityLeaf(type_, window, cmp)


# ---------------------------------------------------------------------------------------
# Back to JSON


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else v


def _cmp_doc(c: NumCmp) -> dict[str, Any]:
    if c.op == "between":
        return {"op": c.op, "value": [_num(c.value[0]), _num(c.value[1])]}
    return {"op": c.op, "value": _num(c.value)}


def rule_doc(rule: Rule) -> dict[str, Any]:
    """The canonical JSON document of a rule (parse_rule(rule_doc(r)) == r)."""
    if isinstance(rule, All):
        return {"all": [rule_doc(r) for r in rule.items]}
    if isinstance(rule, AnyOf):
        return {"any": [rule_doc(r) for r in rule.items]}
    if isinstance(rule, Not):
        return {"not": rule_doc(rule.item)}
    if isinstance(rule, FieldLeaf):
        out: dict[str, Any] = {"field": rule.field, "op": rule.op}
        if rule.value is None:
            return out
        v = rule.value
        if rule.kind == "number":
            v = [_num(x) for x in v] if isinstance(v, tuple) else _num(v)
        elif isinstance(v, tuple):
            v = list(v)
        out["value"] = v
        return out
    if isinstance(rule, SignalLeaf):
        sig: dict[str, Any] = {"source": rule.source}
        if rule.type is not None:
            sig["type"] = rule.type
        if rule.topic is not None:
            sig["topic"] = rule.topic
        out = {"signal": sig, "window_days": rule.window_days}
        if rule.measure != "count":
            out["measure"] = rule.measure
        return out | _cmp_doc(rule.cmp)
    if isinstance(rule, SurgeLeaf):
        surge: dict[str, Any] = {"source": rule.source}
        if rule.type is not None:
            surge["type"] = rule.type
        return {"surge": surge, "op": "eq", "value": rule.value}
    if isinstance(rule, DealLeaf):
        deal: dict[str, Any] = {"status": rule.status}
        if rule.amount is not None:
            deal["amount"] = _cmp_doc(rule.amount)
        if rule.within_days is not None:
            deal["within_days"] = rule.within_days
        return {"deal": deal} | _cmp_doc(rule.cmp)
    assert isinstance(rule, ActivityLeaf)
    return {"activity": {"type": rule.type}, "window_days": rule.window_days} | _cmp_doc(rule.cmp)


def leaves(rule: Rule) -> list[Rule]:
    """Every leaf of a rule, in order."""
    if isinstance(rule, All | AnyOf):
        return [leaf for r in rule.items for leaf in leaves(r)]
    if isinstance(rule, Not):
        return leaves(rule.item)
    return [rule]
