"""Segments pages: the list, creating a segment, and a segment's page (rename, status,
rule, members, adding and removing accounts by domain or from a CSV).

The rule builder edits a flat list of field conditions joined by all or any; anything
else (nested groups, signal, surge, deal and activity conditions) is written as JSON in
the same form. Both become the rule document the segments service validates, and every
problem the rules compiler names is shown against the condition or path it concerns.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from intently.custom_fields import repository as cf_repo
from intently.kit.db import read_tx
from intently.kit.domains import InvalidDomain, normalise_domain
from intently.kit.errors import BadRequest, IntentlyError, ValidationFailed
from intently.kit.validation import validate
from intently.rules.language import (
    ALL_OPS,
    BUILTIN_FIELDS,
    CUSTOM_PREFIX,
    LABEL_KINDS,
    OPS_BY_KIND,
)
from intently.segments import repository as segments_repo
from intently.segments import service, upload
from intently.segments.schemas import STATUSES, MembersChange, PreviewIn, SegmentIn, SegmentPatch
from intently.web.session import PageError, Viewer, Writer, engine_of
from intently.web.templating import render

router = APIRouter()

MEMBERS_PER_PAGE = 50
SAMPLE_SIZE = 5
MAX_CONDITIONS = 50
MAX_DOMAINS = 1000  # the segments service's limit per request
TYPES = ("static", "dynamic")

BUILTIN_LABELS = {
    "name": "Name",
    "domain": "Domain",
    "externalId": "External id",
    "shortName": "Short name",
    "linkedinUrl": "LinkedIn URL",
    "tags": "Tags",
    "rtp_account_score": "Account score",
    "rtp_website_intent_score": "Website intent score",
    "rtp_bombora_intent_score": "Bombora intent score",
    "rtp_g2_intent_score": "G2 intent score",
    "rtp_advertising_activity_score": "Advertising activity score",
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
STATUS_ACTIONS = {
    "active": "Activate",
    "draft": "Move to draft",
    "archived": "Archive",
}
DONE = {
    "created": "Segment created.",
    "renamed": "Segment renamed.",
    "status": "Status changed.",
    "rules": "Rule saved; membership recomputed.",
}
SHOW = {
    "live": ("active", "draft"),
    "archived": ("archived",),
    "all": ("active", "draft", "archived"),
}


# ---- the rule builder --------------------------------------------------------------------------


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


def _load_catalogue(request: Request, ws: int) -> list[FieldChoice]:
    with read_tx(engine_of(request)) as conn:
        return catalogue(conn, ws)


def _ops_for(fields: dict[str, FieldChoice], name: str) -> tuple[str, ...]:
    choice = fields.get(name)
    return choice.ops if choice is not None else ALL_OPS


def _problem(path: str, rule: str, text: str) -> dict[str, Any]:
    return {"property": path.rsplit(".", 1)[-1], "path": path, "constraints": {rule: text}}


def _shown(value: Any) -> str:
    """A value sent, as a message quotes it: strings in quotes, the rest as JSON."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = text if len(text) <= 80 else text[:77] + "…"
    return f"'{text}'" if isinstance(value, str) else text


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
            [_problem("mode", "isIn", f"mode must be builder or json, got {_shown(form.mode)}")]
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
            [_problem("match", "isIn", f"match must be all or any, got {_shown(form.match)}")]
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


def _at(doc: Any, parts: list[str]) -> tuple[bool, Any]:
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
            found, value = _at(doc, parts[1:])
            builder = form is not None and form.mode == "builder"
            if builder and len(parts) > 2 and parts[1] in ("all", "any") and parts[2].isdigit():
                i = int(parts[2])
                _, leaf = _at(doc, parts[1:3])
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
                texts += f" (got {_shown(value)})"
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
        "ops_of": lambda name: _ops_for(field_map, name) if name else ALL_OPS,
        "op_labels": OP_LABELS,
        "hint_of": lambda name, op: _value_hint(
            field_map[name].kind if name in field_map else None, op
        ),
    }


def _decode(raw: Any) -> list[dict[str, Any]]:
    return list(msgspec.json.decode(bytes(raw)))


@router.get("/segments/rule-row")
def rule_row(
    request: Request,
    user: Viewer,
    field: Annotated[str, Query(max_length=400)] = "",
    op: Annotated[str, Query(max_length=40)] = "",
    value: Annotated[str, Query(max_length=10_000)] = "",
) -> Response:
    """One condition row (htmx): a new one, or one whose field changed (its operators
    follow the field's kind)."""
    fields = {f.name: f for f in _load_catalogue(request, user.workspace_id)}
    ops = _ops_for(fields, field) if field else ()
    row = RuleRow(field, op if op in ops or not ops else ops[0], value[:10_000])
    response = render(
        request, "segments/_rule_row.html", user, row=row, **builder_context(list(fields.values()))
    )
    response.headers["HX-Trigger"] = "rule-changed"
    return response


# ---- the list and creating -------------------------------------------------------------------


@router.get("/segments")
def segments_list(request: Request, user: Viewer, show: str = "live") -> Response:
    if show not in SHOW:
        raise PageError(400, f"show must be live, archived or all, got '{show[:40]}'")
    with read_tx(engine_of(request)) as conn:
        everything = segments_repo.all_with_counts(conn, user.workspace_id)
    tally = {k: sum(1 for s, _ in everything if s["status"] in v) for k, v in SHOW.items()}
    items = sorted(
        ({**s, "memberCount": n} for s, n in everything if s["status"] in SHOW[show]),
        key=lambda s: (s["name"].casefold(), s["id"]),
    )
    return render(
        request, "segments/list.html", user, nav="segments", items=items, show=show,
        tally=tally,
    )  # fmt: skip


def _new_page(
    request: Request,
    user: Any,
    *,
    name: str = "",
    seg_type: str = "static",
    status: str = "active",
    form: RuleForm | None = None,
    form_problems: Iterable[str] = (),
    problems: Iterable[str] = (),
    status_code: int = 200,
) -> Response:
    fields = _load_catalogue(request, user.workspace_id)
    return render(
        request,
        "segments/new.html",
        user,
        status_code=status_code,
        nav="segments",
        seg_name=name,
        seg_type=seg_type,
        status=status,
        statuses=STATUSES,
        form=form or RuleForm(rows=[RuleRow()]),
        form_problems=list(form_problems),
        problems=list(problems),
        **builder_context(fields),
    )


@router.get("/segments/new")
def new_segment(request: Request, user: Viewer, type: str = "static") -> Response:
    return _new_page(request, user, seg_type=type if type in TYPES else "static")


@router.post("/segments")
def create_segment(
    request: Request,
    user: Writer,
    form: RuleFormDep,
    name: Annotated[str, Form(max_length=500)] = "",
    type: Annotated[str, Form(max_length=40)] = "static",
    status: Annotated[str, Form(max_length=40)] = "active",
) -> Response:
    problems = []  # about the name, type and status
    rule_problems: list[str] = []
    if not name.strip():
        problems.append("name: name should not be empty")
    if type not in TYPES:
        problems.append(f"type: type must be static or dynamic, got {_shown(type)}")
    if status not in STATUSES:
        problems.append(f"status: status must be active, draft or archived, got {_shown(status)}")
    rules: Any = None
    fields = {f.name: f for f in _load_catalogue(request, user.workspace_id)}
    numbers: list[int] = []
    if type == "dynamic":
        try:
            rules, numbers = rule_of(form, fields)
        except ValidationFailed as exc:
            rule_problems = problem_lines(exc, None, form, [], fields)
    if not problems and not rule_problems:
        body = {"name": name, "type": type, "status": status, "rules": rules}
        try:
            created = service.create(
                engine_of(request), user.workspace_id, validate(SegmentIn, body)
            )
        except ValidationFailed as exc:
            for item in exc.errors:
                line = problem_lines(ValidationFailed([item]), rules, form, numbers, fields)
                about_rule = str(item.get("path") or "").startswith("rules")
                (rule_problems if about_rule and type == "dynamic" else problems).extend(line)
        else:
            return RedirectResponse(f"/app/segments/{created['segmentId']}?done=created", 303)
    return _new_page(
        request, user, name=name, seg_type=type if type in TYPES else "static",
        status=status if status in STATUSES else "active", form=form,
        form_problems=problems, problems=rule_problems, status_code=400,
    )  # fmt: skip


@router.post("/segments/preview")
def preview(
    request: Request,
    user: Writer,
    form: RuleFormDep,
    type: Annotated[str, Form(max_length=40)] = "dynamic",
) -> Response:
    """What the rule being edited matches now (htmx): the count and the first accounts, or
    every problem with it. In builder mode the JSON editor is kept in step (out of band)."""
    fields = {f.name: f for f in _load_catalogue(request, user.workspace_id)}
    context: dict[str, Any] = {"static": type == "static", "form": form}
    if type != "static":
        doc: Any = None
        numbers: list[int] = []
        try:
            doc, numbers = rule_of(form, fields)
            body = validate(PreviewIn, {"rules": doc, "sampleSize": SAMPLE_SIZE})
            result = service.preview(engine_of(request), user.workspace_id, body)
            context |= {"count": result["count"], "sample": _decode(result["sample"])}
        except ValidationFailed as exc:
            context["problems"] = problem_lines(exc, doc, form, numbers, fields)
        if form.mode == "builder" and doc is not None:
            context["synced_json"] = json.dumps(doc, indent=2)
    if form.mode == "json" and type != "static":
        # Keep the builder in step with the JSON when it can show the rule.
        try:
            shown = rows_of(json.loads(form.rules_json))
        except json.JSONDecodeError:
            shown = None
        if shown is not None:
            context["synced_match"], context["synced_rows"] = shown
    return render(
        request, "segments/_preview.html", user, **context, **builder_context(list(fields.values()))
    )


# ---- one segment --------------------------------------------------------------------------------


def _detail(
    request: Request,
    user: Any,
    sid: str,
    *,
    cursor: str | None = None,
    form: RuleForm | None = None,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    engine = engine_of(request)
    seg = service.get(engine, user.workspace_id, sid)  # 400 for a bad id, 404 if not ours
    with read_tx(engine) as conn:
        row = segments_repo.get(conn, user.workspace_id, sid) or {}
        fields = catalogue(conn, user.workspace_id)
    codec = request.app.state.intently.codec
    try:
        members = service.members_page(
            engine, codec, user.workspace_id, sid, limit=MEMBERS_PER_PAGE, cursor=cursor
        )
    except BadRequest:
        raise PageError(
            400, f"cursor is not one this member list gave out: '{(cursor or '')[:40]}'"
        ) from None
    transitions = [s for s in STATUSES if s != seg["status"]]
    return render(
        request,
        "segments/detail.html",
        user,
        status_code=status_code,
        nav="segments",
        seg=seg,
        created_at=row.get("created_at"),
        updated_at=row.get("updated_at"),
        members=_decode(members["data"]),
        next_cursor=members["nextCursor"],
        paged=cursor is not None,
        per_page=MEMBERS_PER_PAGE,
        transitions=transitions,
        status_actions=STATUS_ACTIONS,
        open_static=seg["type"] == "static" and seg["status"] in ("active", "draft"),
        form=form or (form_of_rule(seg["rules"]) if seg["type"] == "dynamic" else None),
        **builder_context(fields),
        **extra,
    )


@router.get("/segments/{sid}")
def segment_page(
    request: Request, sid: str, user: Viewer, cursor: str | None = None, done: str = ""
) -> Response:
    return _detail(request, user, sid, cursor=cursor, flash=DONE.get(done, ""))


def _patch(request: Request, user: Any, sid: str, body: dict[str, Any]) -> None:
    service.patch(engine_of(request), user.workspace_id, sid, validate(SegmentPatch, body))


@router.post("/segments/{sid}/name")
def rename(
    request: Request, sid: str, user: Writer, name: Annotated[str, Form(max_length=500)] = ""
) -> Response:
    service.get(engine_of(request), user.workspace_id, sid)
    if not name.strip():
        return _detail(request, user, sid, error="name: name should not be empty", status_code=400)
    _patch(request, user, sid, {"name": name})
    return RedirectResponse(f"/app/segments/{sid}?done=renamed", 303)


@router.post("/segments/{sid}/status")
def change_status(
    request: Request, sid: str, user: Writer, status: Annotated[str, Form(max_length=40)] = ""
) -> Response:
    service.get(engine_of(request), user.workspace_id, sid)
    if status not in STATUSES:
        return _detail(
            request, user, sid, status_code=400,
            error=f"status: status must be active, draft or archived, got {_shown(status)}",
        )  # fmt: skip
    _patch(request, user, sid, {"status": status})
    return RedirectResponse(f"/app/segments/{sid}?done=status", 303)


@router.post("/segments/{sid}/rules")
def save_rules(request: Request, sid: str, user: Writer, form: RuleFormDep) -> Response:
    seg = service.get(engine_of(request), user.workspace_id, sid)
    if seg["type"] != "dynamic":
        raise PageError(400, f"Segment '{sid}' is a static segment: it has no rule")
    fields = {f.name: f for f in _load_catalogue(request, user.workspace_id)}
    doc: Any = None
    numbers: list[int] = []
    try:
        doc, numbers = rule_of(form, fields)
        _patch(request, user, sid, {"rules": doc})
    except ValidationFailed as exc:
        lines = problem_lines(exc, doc, form, numbers, fields)
        return _detail(request, user, sid, form=form, problems=lines, status_code=400)
    return RedirectResponse(f"/app/segments/{sid}?done=rules", 303)


@router.post("/segments/{sid}/refresh")
def refresh(request: Request, sid: str, user: Writer) -> Response:
    service.get(engine_of(request), user.workspace_id, sid)
    try:
        result = service.refresh(engine_of(request), user.workspace_id, sid)
    except IntentlyError as exc:
        return _detail(request, user, sid, error=error_text(exc), status_code=exc.status)
    done = result["segments"][0] if result["segments"] else {"entered": 0, "exited": 0}
    return _detail(
        request, user, sid,
        flash=f"Membership recomputed: {done['entered']} entered, {done['exited']} left.",
    )  # fmt: skip


def error_text(exc: IntentlyError, body: Any = None) -> str:
    """A service error as one sentence; a validation failure names every problem, with the
    value sent when `body` (the request body) holds it."""
    if not isinstance(exc, ValidationFailed):
        return exc.custom_message
    parts = []
    for item in exc.errors:
        path = str(item.get("path") or item.get("property") or "")
        texts = "; ".join(str(t) for t in (item.get("constraints") or {}).values())
        found, value = _at(body, path.split("."))
        got = f" (got {_shown(value)})" if found and not isinstance(value, dict | list) else ""
        parts.append(f"{path}: {texts}{got}")
    return " · ".join(parts) or exc.custom_message


def _split_domains(text: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(normalised domains, invalid entries with their line) from a box of domains, one
    per line or separated by commas or spaces."""
    good: list[str] = []
    bad: list[dict[str, Any]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        for raw in line.replace(",", " ").replace(";", " ").split():
            try:
                good.append(normalise_domain(raw))
            except InvalidDomain:
                bad.append({"line": line_no, "value": raw, "reason": "not a valid domain name"})
    return list(dict.fromkeys(good)), bad


def _domains_or_error(
    request: Request, user: Any, sid: str, text: str
) -> tuple[list[str], list[dict[str, Any]]] | Response:
    domains, invalid = _split_domains(text)
    if not domains and not invalid:
        return _detail(
            request, user, sid, status_code=400,
            error="domains: domains should not be empty: enter one domain per line",
        )  # fmt: skip
    if len(domains) > MAX_DOMAINS:
        return _detail(
            request, user, sid, status_code=400,
            error=f"domains: at most {MAX_DOMAINS} domains at a time (got {len(domains)}); "
            "upload a CSV for more",
        )  # fmt: skip
    return domains, invalid


@router.post("/segments/{sid}/members/add")
def add_members(
    request: Request,
    sid: str,
    user: Writer,
    domains: Annotated[str, Form(max_length=200_000)] = "",
) -> Response:
    service.get(engine_of(request), user.workspace_id, sid)
    parsed = _domains_or_error(request, user, sid, domains)
    if isinstance(parsed, Response):
        return parsed
    good, invalid = parsed
    result: dict[str, Any] = {"added": 0, "alreadyMembers": 0, "notFound": []}
    if good:
        try:
            result = service.add_accounts(
                engine_of(request), user.workspace_id, sid, MembersChange(domains=good)
            )
        except IntentlyError as exc:
            return _detail(request, user, sid, error=error_text(exc), status_code=exc.status)
    return _detail(request, user, sid, added={**result, "invalid": invalid})


@router.post("/segments/{sid}/members/remove")
def remove_members(
    request: Request,
    sid: str,
    user: Writer,
    domains: Annotated[str, Form(max_length=200_000)] = "",
    rtp_aid: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    service.get(engine_of(request), user.workspace_id, sid)
    invalid: list[dict[str, Any]] = []
    if rtp_aid:
        change = MembersChange(rtp_aids=[rtp_aid.strip()])
    else:
        parsed = _domains_or_error(request, user, sid, domains)
        if isinstance(parsed, Response):
            return parsed
        good, invalid = parsed
        change = MembersChange(domains=good)
    result: dict[str, Any] = {"removed": 0, "notMembers": 0, "notFound": []}
    if change.rtp_aids or change.domains:
        try:
            result = service.remove_accounts(engine_of(request), user.workspace_id, sid, change)
        except IntentlyError as exc:
            body = change.model_dump()
            return _detail(request, user, sid, error=error_text(exc, body), status_code=exc.status)
    return _detail(request, user, sid, removed={**result, "invalid": invalid})


def _csv_text(file: UploadFile | None, limit: int) -> str:
    """The uploaded file as text, or BadRequest naming what is wrong with it."""
    if file is None or (not file.filename and not file.size):
        raise BadRequest("file: choose a CSV file of domains to upload")
    raw = file.file.read(limit + 1)
    if len(raw) > limit:
        raise BadRequest(f"file: '{file.filename}' is larger than the limit of {limit:,} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest(f"file: '{file.filename}' is not UTF-8 text") from None
    if "\x00" in text:
        raise BadRequest(f"file: '{file.filename}' holds NUL characters: it is not a CSV")
    if not text.strip():
        raise BadRequest(f"file: '{file.filename}' is empty: expected a CSV of domains")
    return text


@router.post("/segments/{sid}/upload")
def upload_csv(
    request: Request,
    sid: str,
    user: Writer,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    engine = engine_of(request)
    service.get(engine, user.workspace_id, sid)
    limit: int = request.app.state.intently.settings.max_body_bytes
    try:
        text = _csv_text(file, limit)
        rows = upload.domain_rows(io.StringIO(text, newline=""))
        report = upload.add_from_csv(engine, user.workspace_id, sid, rows)
    except IntentlyError as exc:
        return _detail(request, user, sid, error=error_text(exc), status_code=exc.status)
    return _detail(
        request, user, sid, report=report, filename=file.filename if file is not None else ""
    )
