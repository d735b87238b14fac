"""A rule evaluated for one account in memory (the meaning `sql.py` must reproduce)."""

from __future__ import annotations

from typing import Any

from intently.kit.timefmt import US_PER_DAY
from intently.rules.facts import AccountFacts
from intently.rules.terms import (
    BUILTIN_FIELDS,
    COMPARE,
    NEGATIVE,
    Context,
    date_text,
    deal_status,
    is_surging,
    stored_date,
)
from intently.rules.tree import (
    ActivityLeaf,
    All,
    AnyOf,
    DealLeaf,
    FieldLeaf,
    Not,
    NumCmp,
    Rule,
    SignalLeaf,
    SurgeLeaf,
)

_MISSING = object()


def evaluate(rule: Rule, facts: AccountFacts, ctx: Context) -> bool:
    if isinstance(rule, All):
        return all(evaluate(r, facts, ctx) for r in rule.items)
    if isinstance(rule, AnyOf):
        return any(evaluate(r, facts, ctx) for r in rule.items)
    if isinstance(rule, Not):
        return not evaluate(rule.item, facts, ctx)
    if isinstance(rule, FieldLeaf):
        return _field(rule, facts, ctx)
    if isinstance(rule, SignalLeaf):
        lo, hi = ctx.as_of_day - rule.window_days, ctx.as_of_day
        total: float = 0
        for s in facts.signals:
            if (
                s.source == rule.source
                and lo < s.day <= hi
                and (rule.type is None or s.type == rule.type)
                and (rule.topic is None or s.topic == rule.topic)
            ):
                total += s.count if rule.measure == "count" else s.value_sum
        return num_cmp(rule.cmp, total)
    if isinstance(rule, SurgeLeaf):
        p, day = ctx.surge, ctx.as_of_day
        recent = baseline = 0
        for s in facts.signals:
            if s.source != rule.source or (rule.type is not None and s.type != rule.type):
                continue
            if day - p.recent_days < s.day <= day:
                recent += s.count
            elif day - p.recent_days - p.baseline_days < s.day <= day - p.recent_days:
                baseline += s.count
        return is_surging(recent, baseline, p) == rule.value
    if isinstance(rule, DealLeaf):
        n = 0
        for deal in facts.deals:
            if deal.created > ctx.as_of:
                continue  # not yet created at as_of
            if rule.within_days is not None and deal.created <= (
                ctx.as_of - rule.within_days * US_PER_DAY
            ):
                continue
            if rule.status != "any" and deal_status(deal.stage_label, ctx.deal_stages) != (
                rule.status
            ):
                continue
            if rule.amount is not None and not (
                num_cmp(rule.amount, deal.amount) if deal.amount is not None else _null_cmp(rule)
            ):
                continue
            n += 1
        return num_cmp(rule.cmp, n)
    assert isinstance(rule, ActivityLeaf)
    start = ctx.as_of - rule.window_days * US_PER_DAY
    n = sum(
        1
        for x in facts.activities
        if start < x.occurred_at <= ctx.as_of and (rule.type == "any" or x.type == rule.type)
    )
    return num_cmp(rule.cmp, n)


def _null_cmp(rule: DealLeaf) -> bool:
    # A deal without an amount: only `ne` (the negation of `eq`) holds.
    return rule.amount is not None and rule.amount.op == "ne"


def num_cmp(c: NumCmp, x: float) -> bool:
    v = c.value
    x = float(x)
    if c.op == "between":
        return bool(v[0] <= x <= v[1])
    return bool(COMPARE[c.op](x, v))


def _value(leaf: FieldLeaf, facts: AccountFacts) -> Any:
    """The account's value for the leaf's field, or _MISSING when it has none of that kind."""
    key = leaf.custom_key
    if key is None:
        v = facts.row[BUILTIN_FIELDS[leaf.field][0]]
        if v is None:
            return _MISSING
        if leaf.field == "createdAt":
            return date_text(int(v) // US_PER_DAY)
        return v
    v = (facts.row["custom_fields"] or {}).get(key, _MISSING)
    if v is None or v is _MISSING:
        return _MISSING
    kind = leaf.kind
    if kind == "number":
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else _MISSING
    if kind == "text":
        return v if isinstance(v, str) else _MISSING
    if kind == "date":
        d = stored_date(v)
        return d if d is not None else _MISSING
    if kind == "multi":
        return v if isinstance(v, list) else _MISSING
    return v  # auto


def _field(leaf: FieldLeaf, facts: AccountFacts, ctx: Context) -> bool:
    op = leaf.op
    if op in NEGATIVE:
        positive = FieldLeaf(leaf.field, NEGATIVE[op], leaf.value, leaf.kind)
        return not _field(positive, facts, ctx)
    v = _value(leaf, facts)
    if v is _MISSING:
        return False
    kind, want = leaf.kind, leaf.value
    if op == "exists":
        if kind in ("multi", "auto") and isinstance(v, list):
            return len(v) > 0
        return True
    if kind in ("multi", "auto") and isinstance(v, list):
        strings = {e for e in v if isinstance(e, str)}
        if op == "contains":
            return want in strings
        if op == "in":
            return any(w in strings for w in want)
        return False
    if kind == "auto":
        return op == "contains" and isinstance(v, str) and want in v
    if kind == "multi":
        return False
    if op == "eq":
        return bool(v == want)
    if op == "in":
        return v in want
    if op == "contains":
        return want in v
    if op == "starts_with":
        return bool(v.startswith(want))
    if op == "within_days":
        return date_text(ctx.as_of_day - want + 1) <= v <= date_text(ctx.as_of_day)
    if op == "gt":
        return bool(v > want)
    if op == "gte":
        return bool(v >= want)
    if op == "lt":
        return bool(v < want)
    if op == "lte":
        return bool(v <= want)
    assert op == "between"
    return bool(want[0] <= v <= want[1])
