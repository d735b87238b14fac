"""The rule builder of dynamic segments: the fields a rule can compare, a flat list of
condition rows joined by all or any, and the problems of a rule named against the row
(or JSON path) they concern.

Anything the rows cannot show (nested groups, signal, surge, deal and activity
conditions) is written as JSON in the same form. Both become the rule document the
segments service validates.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any

from fastapi import Depends, Form, Request

from intently.catalog import SCORE_LABELS
from intently.custom_fields import repository as cf_repo
from intently.kit.db import read_tx
from intently.kit.errors import ValidationFailed
from intently.kit.text import quoted
from intently.rules.terms import ALL_OPS, BUILTIN_FIELDS, CUSTOM_PREFIX, LABEL_KINDS, OPS_BY_KIND
from intently.web.session import engine_of

MAX_CONDITIONS = 50

BUILTIN_LABELS = {
    "name": "Name",
    "domain": "Domain",
    "externalId": "External id",
    "shortName": "Short name",
    "linkedinUrl": "LinkedIn URL",
    "tags": "Tags",
    "industry": "Industry",
    "employeeCount": "Employees",
    "annualRevenue": "Annual revenue (USD)",
    "country": "Country (ISO code, e.g. DE)",
    "city": "City",
    "logoUrl": "Logo URL",
    **SCORE_LABELS,
    "rtp_fit_score": "Fit score",
    "rtp_grade": "Grade (fit x intent, e.g. A1)",
    "rtp_journey_stage": "Journey stage",
    "createdAt": "Created on",
}
OP_LABELS = {
    "eq": "is",
    "ne": "is not",
    "gt": "greater than / after",
    "gte": "at least / on or after",
    "lt": "less than / before",
    "lte": "at most / on or before",
    "between": "between (low, high)",
    "in": "is one of (a, b, …)",
    "not_in": "is none of (a, b, …)",
    "contains": "contains",
    "not_contains": "does not contain",
    "starts_with": "starts with",
    "exists": "has a value",
    "missing": "has no value",
    "within_days": "within the last N days",
}
VALUE_HINTS = {
    "number": "a number, e.g. 50",
    "date": "a date, YYYY-MM-DD",
    "text": "text",
    "multi": "a value",
    "auto": "a value",
}

# A value sent, as these pages' messages quote it: a string in quotes, the rest as JSON.
quote_value = partial(quoted, limit=80, keep=77)


@dataclass(frozen=True)
class FieldChoice:
    """One field the builder offers: its rule name, label and kind (which operators apply)."""

    name: str
    label: str
    kind: str
    custom: bool = False

    @property
    def ops(self) -> tuple[str, ...]:
        return OPS_BY_KIND[self.kind]


@dataclass
class RuleRow:
    """One condition row as typed: field, operator, value text."""

    field: str = ""
    op: str = ""
    value: str = ""


@dataclass
class RuleForm:
    """The rule part of a segment form, as submitted."""

    mode: str = "builder"  # builder | json
    match: str = "all"  # all | any
    rows: list[RuleRow] = field(default_factory=list)
    rules_json: str = ""


def catalogue(conn: Any, ws: int) -> list[FieldChoice]:
    """The fields a rule can compare: the built-in ones and the active custom fields."""
    out = [
        FieldChoice(name, BUILTIN_LABELS.get(name, name), kind)
        for name, (_, kind) in BUILTIN_FIELDS.items()
    ]
    for cf in cf_repo.active(conn, ws):
        kind = LABEL_KINDS.get(cf["label_type"], "text")
        out.append(FieldChoice(CUSTOM_PREFIX + cf["key"], cf["label"], kind, custom=True))
    return out


def load_catalogue(request: Request, ws: int) -> list[FieldChoice]:
    with read_tx(engine_of(request)) as conn:
        return catalogue(conn, ws)


def ops_for(fields: dict[str, FieldChoice], name: str) -> tuple[str, ...]:
    choice = fields.get(name)
    return choice.ops if choice is not None else ALL_OPS


def _problem(path: str, rule: str, text: str) -> dict[str, Any]:
    return {"property": path.rsplit(".", 1)[-1], "path": path, "constraints": {rule: text}}


def _number(text: str) -> Any:
    """A number typed in a value box; the text itself when it is not one (the rules
    compiler then says the value must be a number)."""
    try:
        n = float(text)
    except ValueError:
        return text
    if not math.isfinite(n):
        return text
    return int(n) if n.is_integer() and abs(n) < 2**53 else n


def _typed(kind: str | None, text: str) -> Any:
    return _number(text) if kind == "number" else text


def leaf_of(row: RuleRow, kind: str | None) -> dict[str, Any]:
    """The rule leaf a condition row stands for."""
    leaf: dict[str, Any] = {"field": row.field, "op": row.op}
    text = row.value.strip()
    if row.op in ("exists", "missing"):
        return leaf
    if row.op in ("in", "not_in"):
        leaf["value"] = [_typed(kind, p.strip()) for p in text.split(",") if p.strip()]
    elif row.op == "between":
        leaf["value"] = [_typed(kind, p.strip()) for p in text.split(",")] if text else None
    elif row.op == "within_days":
        leaf["value"] = _number(text) if text else None
    else:
        leaf["value"] = _typed(kind, text) if text else None
    return leaf


def rule_of(form: RuleForm, fields: dict[str, FieldChoice]) -> tuple[Any, list[int]]:
    """(the rule document the form describes, the form row number of each condition), or
    ValidationFailed naming what is wrong with the form itself."""
    if form.mode not in ("builder", "json"):
        raise ValidationFailed(
            [
                _problem(
                    "mode", "isIn", f"mode must be builder or json, got {quote_value(form.mode)}"
                )
            ]
        )
    if form.mode == "json":
        text = form.rules_json.strip()
        if not text:
            raise ValidationFailed(
                [_problem("rules_json", "isNotEmpty", "rules_json should not be empty")]
            )
        try:
            return json.loads(text), []
        except json.JSONDecodeError as exc:
            raise ValidationFailed(
                [
                    _problem(
                        "rules_json",
                        "isJson",
                        f"rules_json is not valid JSON: {exc.msg} at line {exc.lineno} "
                        f"column {exc.colno}",
                    )
                ]
            ) from None
    if form.match not in ("all", "any"):
        raise ValidationFailed(
            [_problem("match", "isIn", f"match must be all or any, got {quote_value(form.match)}")]
        )
    used = [(i + 1, r) for i, r in enumerate(form.rows) if r.field.strip()]
    if not used:
        raise ValidationFailed(
            [
                _problem(
                    "rules",
                    "isNotEmpty",
                    "add at least one condition (choose a field), or write the rule as JSON",
                )
            ]
        )
    if len(used) > MAX_CONDITIONS:
        raise ValidationFailed(
            [
                _problem(
                    "rules",
                    "arrayMaxSize",
                    f"a rule built here takes at most {MAX_CONDITIONS} conditions; got {len(used)}",
                )
            ]
        )
    leaves = []
    for _, r in used:
        choice = fields.get(r.field)
        leaves.append(leaf_of(r, choice.kind if choice else None))
    return {form.match: leaves}, [n for n, _ in used]


def value_at(doc: Any, parts: list[str]) -> tuple[bool, Any]:
    """(found, value) at a problem's path inside the submitted document."""
    for p in parts:
        if isinstance(doc, dict) and p in doc:
            doc = doc[p]
        elif isinstance(doc, list) and p.isdigit() and int(p) < len(doc):
            doc = doc[int(p)]
        else:
            return False, None
    return True, doc


def problem_lines(
    exc: ValidationFailed,
    doc: Any,
    form: RuleForm | None,
    numbers: list[int],
    fields: dict[str, FieldChoice],
) -> list[str]:
    """One sentence per problem, naming the condition (or JSON path) and the value sent."""
    lines = []
    for item in exc.errors:
        path = str(item.get("path") or item.get("property") or "")
        texts = "; ".join(str(t) for t in (item.get("constraints") or {}).values())
        parts = path.split(".")
        where = path
        if parts[0] == "rules" and len(parts) > 1 and doc is not None:
            found, value = value_at(doc, parts[1:])
            builder = form is not None and form.mode == "builder"
            if builder and len(parts) > 2 and parts[1] in ("all", "any") and parts[2].isdigit():
                i = int(parts[2])
                _, leaf = value_at(doc, parts[1:3])
                name = leaf.get("field") if isinstance(leaf, dict) else None
                label = fields[name].label if name in fields else name
                rest = ".".join(parts[3:])
                row_no = numbers[i] if i < len(numbers) else i + 1
                where = f"Condition {row_no} ({label})" + (f", {rest}" if rest else "")
            if (
                found
                and value is not None
                and (not isinstance(value, dict | list) or parts[-1] == "value")
            ):
                texts += f" (got {quote_value(value)})"
        lines.append(f"{where}: {texts}" if where else texts)
    return lines


def _value_text(v: Any) -> str | None:
    """A stored value as the builder's value box shows it; None when it cannot."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return str(_number(str(v)))
    if isinstance(v, str):
        # The box is trimmed when read back: only values it keeps as they are go there.
        return v if v and v == v.strip() else None
    if isinstance(v, list) and all(not isinstance(x, dict | list | bool) for x in v):
        items = [_value_text(x) for x in v]
        if any(x is None or "," in x for x in items):
            return None
        return ", ".join(x for x in items if x is not None)
    return None


def rows_of(doc: Any) -> tuple[str, list[RuleRow]] | None:
    """(all | any, rows) when a rule is a flat list of field conditions the builder can
    show; None when only the JSON editor can."""
    if not isinstance(doc, dict):
        return None
    if "field" in doc:
        items, match = [doc], "all"
    elif len(doc) == 1 and isinstance(doc.get("all", doc.get("any")), list):
        match = "all" if "all" in doc else "any"
        items = doc[match]
    else:
        return None
    rows = []
    for leaf in items:
        if not isinstance(leaf, dict) or not isinstance(leaf.get("field"), str):
            return None
        if set(leaf) - {"field", "op", "value"} or not isinstance(leaf.get("op"), str):
            return None
        text = _value_text(leaf.get("value"))
        if text is None:
            return None
        rows.append(RuleRow(leaf["field"], leaf["op"], text))
    return match, rows


def form_of_rule(doc: Any) -> RuleForm:
    """The form that edits a stored rule: the builder when it can show it, else JSON."""
    pretty = json.dumps(doc, indent=2) if doc is not None else ""
    shown = rows_of(doc)
    if shown is None:
        return RuleForm(mode="json", rows=[RuleRow()], rules_json=pretty)
    match, rows = shown
    return RuleForm(mode="builder", match=match, rows=[*rows, RuleRow()], rules_json=pretty)


def rule_form(
    mode: Annotated[str, Form(max_length=20)] = "builder",
    match: Annotated[str, Form(max_length=20)] = "all",
    field: Annotated[list[str] | None, Form()] = None,
    op: Annotated[list[str] | None, Form()] = None,
    value: Annotated[list[str] | None, Form()] = None,
    rules_json: Annotated[str, Form(max_length=200_000)] = "",
) -> RuleForm:
    """The rule builder's inputs; rows are the field, op and value boxes in order."""
    fields, ops, values = field or [], op or [], value or []
    n = max(len(fields), len(ops), len(values))

    def nth(xs: list[str], i: int) -> str:
        return xs[i][:10_000] if i < len(xs) else ""

    rows = [RuleRow(nth(fields, i).strip(), nth(ops, i).strip(), nth(values, i)) for i in range(n)]
    return RuleForm(mode, match, rows or [RuleRow()], rules_json)


RuleFormDep = Annotated[RuleForm, Depends(rule_form)]


def _value_hint(kind: str | None, op: str) -> str:
    if op in ("exists", "missing"):
        return "(no value)"
    if op in ("in", "not_in"):
        return "a, b, c"
    if op == "between":
        return "low, high"
    if op == "within_days":
        return "days, e.g. 30"
    return VALUE_HINTS.get(kind or "", "a value")


def builder_context(fields: list[FieldChoice]) -> dict[str, Any]:
    """What the rule builder templates need to draw condition rows."""
    field_map = {f.name: f for f in fields}
    return {
        "fields": fields,
        "custom_fields": [f for f in fields if f.custom],
        "field_map": field_map,
        "ops_of": lambda name: ops_for(field_map, name) if name else ALL_OPS,
        "op_labels": OP_LABELS,
        "hint_of": lambda name, op: _value_hint(
            field_map[name].kind if name in field_map else None, op
        ),
    }
