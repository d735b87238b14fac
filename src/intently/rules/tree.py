"""A rule as a tree of nodes, and the tree back to its canonical JSON document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from intently.rules.terms import CUSTOM_PREFIX


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


@dataclass(frozen=True)
class Size:
    """What a rule costs to evaluate, as its limits count it (terms.MAX_*)."""

    conditions: int  # leaves
    related: int  # signal, surge, deal and activity leaves
    values: int  # values in all `in` / `not_in` lists
    depth: int  # levels, the leaf included


def size_of(rule: Rule) -> Size:
    if isinstance(rule, All | AnyOf | Not):
        items = rule.items if isinstance(rule, All | AnyOf) else (rule.item,)
        parts = [size_of(r) for r in items]
        return Size(
            sum(p.conditions for p in parts),
            sum(p.related for p in parts),
            sum(p.values for p in parts),
            1 + max((p.depth for p in parts), default=0),
        )
    if isinstance(rule, FieldLeaf):
        values = len(rule.value) if rule.op in ("in", "not_in") else 0
        return Size(1, 0, values, 1)
    return Size(1, 1, 0, 1)
