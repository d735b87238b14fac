"""Segments pages: the list, creating a segment, and a segment's page (rename, status,
rule, members, adding and removing accounts by domain or from a CSV).

A dynamic segment's rule is edited with the rule builder (`rule_builder.py`): every
problem the rules compiler names is shown against the condition or path it concerns.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from intently.kit.db import read_tx
from intently.kit.domains import InvalidDomain, normalise_domain
from intently.kit.errors import (
    BadRequest,
    IntentlyError,
    TooManyRequests,
    UnprocessableEntity,
    ValidationFailed,
)
from intently.kit.validation import validate
from intently.segments import repository as segments_repo
from intently.segments import service, upload
from intently.segments.schemas import STATUSES, MembersChange, PreviewIn, SegmentIn, SegmentPatch
from intently.web.session import PageError, Viewer, Writer, engine_of
from intently.web.templating import render
from intently.web.views.rule_builder import (
    RuleForm,
    RuleFormDep,
    RuleRow,
    builder_context,
    catalogue,
    form_of_rule,
    load_catalogue,
    ops_for,
    problem_lines,
    quote_value,
    rows_of,
    rule_of,
    value_at,
)

router = APIRouter()

MEMBERS_PER_PAGE = 50
SAMPLE_SIZE = 5
MAX_DOMAINS = 1000  # the segments service's limit per request
TYPES = ("static", "dynamic")
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


def _decode(items: Any) -> list[dict[str, Any]]:
    """Account items as the API sends them (a list of pre-rendered JSON) as dicts."""
    return list(msgspec.json.decode(msgspec.json.encode(items)))


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
    fields = {f.name: f for f in load_catalogue(request, user.workspace_id)}
    ops = ops_for(fields, field) if field else ()
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
    fields = load_catalogue(request, user.workspace_id)
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
        problems.append(f"type: type must be static or dynamic, got {quote_value(type)}")
    if status not in STATUSES:
        problems.append(
            f"status: status must be active, draft or archived, got {quote_value(status)}"
        )
    rules: Any = None
    fields = {f.name: f for f in load_catalogue(request, user.workspace_id)}
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
    fields = {f.name: f for f in load_catalogue(request, user.workspace_id)}
    context: dict[str, Any] = {"static": type == "static", "form": form}
    if type != "static":
        doc: Any = None
        numbers: list[int] = []
        try:
            doc, numbers = rule_of(form, fields)
            body = validate(PreviewIn, {"rules": doc, "sampleSize": SAMPLE_SIZE})
            state = request.app.state.intently
            # As the API's preview: stopped after a while, a few at once per workspace.
            with state.previews.hold(user.workspace_id):
                result = service.preview(
                    engine_of(request),
                    user.workspace_id,
                    body,
                    time_limit_s=state.settings.preview_timeout_s,
                )
            context |= {"count": result["count"], "sample": _decode(result["sample"])}
        except ValidationFailed as exc:
            context["problems"] = problem_lines(exc, doc, form, numbers, fields)
        except (UnprocessableEntity, TooManyRequests) as exc:
            context["problems"] = [exc.custom_message]
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
            error=f"status: status must be active, draft or archived, got {quote_value(status)}",
        )  # fmt: skip
    _patch(request, user, sid, {"status": status})
    return RedirectResponse(f"/app/segments/{sid}?done=status", 303)


@router.post("/segments/{sid}/rules")
def save_rules(request: Request, sid: str, user: Writer, form: RuleFormDep) -> Response:
    seg = service.get(engine_of(request), user.workspace_id, sid)
    if seg["type"] != "dynamic":
        raise PageError(400, f"Segment '{sid}' is a static segment: it has no rule")
    fields = {f.name: f for f in load_catalogue(request, user.workspace_id)}
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
        found, value = value_at(body, path.split("."))
        got = f" (got {quote_value(value)})" if found and not isinstance(value, dict | list) else ""
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
