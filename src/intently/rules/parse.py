"""Reading a rule document: `parse_rule` checks it, names every problem with its path,
and builds the tree."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any

from intently.kit.errors import ValidationFailed
from intently.kit.text import quoted
from intently.rules.terms import (
    ACTIVITY_TYPES,
    ALL_OPS,
    BUILTIN_FIELDS,
    CUSTOM_PREFIX,
    DEAL_STATUSES,
    LABEL_KINDS,
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_LIST,
    MAX_RELATED_CONDITIONS,
    MAX_VALUES,
    MAX_WINDOW_DAYS,
    MEASURES,
    NUMERIC_OPS,
    OPS_BY_KIND,
)
from intently.rules.tree import (
    LEAF_KEYS,
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
    size_of,
)

# A value sent, as an error message quotes it: a string in quotes, anything else as Python
# writes it.
_shown = partial(quoted, python=True)


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
    doc: Any,
    *,
    path: str = "rule",
    custom_fields: Mapping[str, str] | None = None,
    bounded: bool = True,
) -> Rule:
    """Check a rule document and build its tree, or raise ValidationFailed naming every
    problem. `custom_fields` (key -> labelType, e.g. from `custom_field_types`) types the
    `customFields.KEY` leaves and rejects unknown keys; without it a custom field's type
    is inferred from the operator and value (see `_infer_kind`). `bounded=False` leaves
    out the limits on size (`size_problems`): for reading a rule stored before them."""
    problems = _Problems()
    rule = _parse(doc, path, 1, problems, custom_fields)
    if problems.items or rule is None:
        raise ValidationFailed(problems.items or [_whole(path)])
    if bounded:
        too_big = size_problems(rule, path)
        if too_big:
            raise ValidationFailed(too_big)
    return rule


def size_problems(rule: Rule, path: str = "rule") -> list[dict[str, Any]]:
    """What in this rule is beyond the limits on its size (terms.MAX_*), each naming the
    figure and the limit; empty when it is within them."""
    size = size_of(rule)
    prop = _prop(path)
    constraints: dict[str, str] = {}
    if size.conditions > MAX_CONDITIONS:
        constraints["maxConditions"] = (
            f"{prop} holds {size.conditions} conditions; a rule may hold at most {MAX_CONDITIONS}"
        )
    if size.related > MAX_RELATED_CONDITIONS:
        constraints["maxRelatedConditions"] = (
            f"{prop} holds {size.related} signal, surge, deal and activity conditions; a rule "
            f"may hold at most {MAX_RELATED_CONDITIONS}"
        )
    if size.values > MAX_VALUES:
        constraints["maxValues"] = (
            f"{prop} lists {size.values} values in its in and not_in conditions; a rule may "
            f"list at most {MAX_VALUES}"
        )
    return [{"property": prop, "path": path, "constraints": constraints}] if constraints else []


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
