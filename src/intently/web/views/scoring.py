"""Scoring pages (admins only): the overview with runs, the model and stage editors with
their dry runs, and the backtest report."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.engine import Engine
from starlette.responses import Response

from intently.kit.errors import BadRequest, Conflict, NotFound, ValidationFailed
from intently.kit.text import as_json
from intently.pipeline import run_scoring
from intently.scoring import service, training, whatif
from intently.scoring.schemas import BUILTIN_TYPES
from intently.stages import service as stages_service
from intently.web.session import Admin, AdminWriter, PageError, engine_of
from intently.web.templating import render

router = APIRouter()

RUNS_SHOWN = 20
# A model or stage list is a few kilobytes; this leaves room for many custom sources.
MAX_JSON = 200_000
DECAY_KINDS = ("linear", "half_life", "window", "step")
# Plain decimals only: "1e999" or "nan" would parse as floats no weight should be.
_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# A problem shows the value sent as JSON (so "3" and 3 read differently), cut short.
_shown = partial(as_json, limit=160)


async def _form(request: Request) -> dict[str, str]:
    """The posted form as text fields (the model form's field names are model paths)."""
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


FormFields = Annotated[dict[str, str], Depends(_form)]


# ---- problems: every field path with the value that was sent -----------------------------------


def _value_at(doc: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at a dotted path like `sources.g2.types.pricing.cap` or `stages.0.rule`."""
    if path in ("", "body"):
        return True, doc
    node = doc
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _problems(exc: ValidationFailed, doc: Any) -> list[dict[str, str]]:
    out = []
    for item in exc.errors:
        path = str(item.get("path") or item.get("property") or "")
        found, value = _value_at(doc, path)
        texts = "; ".join(str(t) for t in (item.get("constraints") or {}).values())
        out.append({"path": path, "value": _shown(value) if found else "(missing)", "text": texts})
    return out


def _parse_json(text: str, field: str) -> tuple[Any, list[dict[str, str]]]:
    if not text.strip():
        return None, [{"path": field, "value": '""', "text": f"{field} should not be empty"}]
    try:
        return json.loads(text), []
    except RecursionError:
        return None, [
            {"path": field, "value": _shown(text[:40]), "text": f"{field} is nested too deeply"}
        ]
    except json.JSONDecodeError as exc:
        near = text[max(0, exc.pos - 30) : exc.pos + 30].replace("\n", " ")
        return None, [
            {
                "path": field,
                "value": _shown(near),
                "text": f"{field} is not valid JSON: {exc.msg} at line {exc.lineno} "
                f"column {exc.colno}",
            }
        ]


def _pretty(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _chart_id(prefix: str) -> str:
    # Unique per render: an htmx swap must never find the previous result's config.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _stale(current: int, sent: str | None) -> list[dict[str, str]]:
    """A save over a version other than the one the editor showed would silently undo
    someone else's change; an editor always sends its version (scripts need not)."""
    if sent is None or sent.strip() == str(current):
        return []
    return [
        {
            "path": "version",
            "value": _shown(sent),
            "text": f"the saved version changed to {current} since this editor was opened; "
            "reload to see it (your text is kept below)",
        }
    ]


def _proposed_json(form: dict[str, str], field: str) -> tuple[str, Any, list[dict[str, str]]]:
    """(text, parsed document, problems) of an editor's one JSON field."""
    text = form.get(field, "")
    if len(text) > MAX_JSON:
        return "", None, [
            {"path": field, "value": f"{len(text):,} characters",
             "text": f"{field} must be at most {MAX_JSON:,} characters"}
        ]  # fmt: skip
    doc, problems = _parse_json(text, field)
    return text, doc, problems


DryRun = Callable[[Engine, int, Any], dict[str, Any]]
Chart = Callable[[dict[str, Any]], dict[str, Any]]


def _dry_run_fragment(
    request: Request,
    user: Any,
    body: dict[str, Any],
    doc: Any,
    problems: list[Any],
    *,
    run: DryRun,
    template: str,
    chart: Chart,
) -> Response:
    """An editor's dry-run fragment for a proposal (`body` carries `doc`), or its problems."""
    if not problems:
        try:
            with request.app.state.intently.previews.hold(user.workspace_id):
                report = run(engine_of(request), user.workspace_id, body)
        except ValidationFailed as exc:
            problems = _problems(exc, doc)
    if problems:
        return render(request, "scoring/_problems.html", user, status_code=400, problems=problems)
    return render(request, template, user, r=report, chart=chart(report))


def _save(
    request: Request,
    user: Any,
    doc: Any,
    problems: list[dict[str, str]],
    *,
    current: dict[str, Any],
    form: dict[str, str],
    put: Callable[[Engine, int, Any], dict[str, Any]],
    editor_url: str,
) -> tuple[Response | None, list[dict[str, str]]]:
    """An editor's save: (a redirect to the editor saying which version it saved, []), or
    (None, the problems) for the editor to show again with what was sent."""
    problems = problems or _stale(current["version"], form.get("version"))
    if not problems:
        try:
            saved = put(engine_of(request), user.workspace_id, doc)
        except ValidationFailed as exc:
            problems = _problems(exc, doc)
        else:
            return RedirectResponse(f"{editor_url}?saved={saved['version']}", status_code=303), []
    return None, problems


def _save_json(
    request: Request,
    user: Any,
    form: dict[str, str],
    *,
    field: str,
    current: dict[str, Any],
    put: Callable[[Engine, int, Any], dict[str, Any]],
    editor_url: str,
    page: Callable[..., Response],
) -> Response:
    """The save of an editor of one JSON field (the stage list, the fit model): saved, or
    its page again with the text sent and every problem."""
    text, doc, problems = _proposed_json(form, field)
    done, problems = _save(
        request, user, doc, problems, current=current, form=form, put=put, editor_url=editor_url
    )
    if done is not None:
        return done
    return page(
        request,
        user,
        current=current,
        text=text,
        problems=problems,
        status_code=_refused_status(problems),
    )


def _refused_status(problems: list[dict[str, str]]) -> int:
    # A stale editor is a conflict with someone else's save; anything else is bad input.
    return 409 if problems and problems[0]["path"] == "version" else 400


def band_chart(
    prefix: str, title: str, before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> dict[str, Any]:
    """A dry run's bar chart: accounts per 10-point band, now and as proposed."""
    return {
        "id": _chart_id(prefix),
        "config": {
            "type": "bar",
            "data": {
                "labels": [f"{b['from']}-{b['to']}" for b in before or after],
                "datasets": [
                    {
                        "label": "Now",
                        "data": [b["accounts"] for b in before],
                        "backgroundColor": "#adb5bd",
                    },
                    {
                        "label": "Proposed",
                        "data": [b["accounts"] for b in after],
                        "backgroundColor": "#3b5bdb",
                    },
                ],
            },
            "options": {
                "plugins": {"title": {"display": True, "text": title}},
                "scales": {"y": {"beginAtZero": True, "ticks": {"precision": 0}}},
            },
        },
    }


# ---- overview and runs -----------------------------------------------------------------------


def _runs(request: Request, ws: int) -> list[dict[str, Any]]:
    return service.list_runs(engine_of(request), ws, RUNS_SHOWN)


TRAININGS_SHOWN = 5


@router.get("/scoring")
def overview(
    request: Request,
    user: Admin,
    run: str | None = None,
    training_id: Annotated[str | None, Query(alias="training")] = None,
    activated: int | None = None,
) -> Response:
    return _overview(request, user, run=run, training_id=training_id, activated=activated)


def _overview(
    request: Request,
    user: Any,
    *,
    run: str | None = None,
    training_id: str | None = None,
    activated: int | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    engine = engine_of(request)
    ws = user.workspace_id
    model = service.get_model(engine, ws)
    stages = stages_service.get_stages(engine, ws)
    accounts = service.count_accounts(engine, ws)
    runs = _runs(request, ws)
    just_ran = None
    if run is not None:
        just_ran = next((r for r in runs if r["runId"] == run), None)
        if just_ran is None:
            shown = run if _RUN_ID.match(run) else "?"
            raise PageError(404, f"Scoring run '{shown}' not found in this workspace.")
    trainings = training.list_trainings(engine, ws, TRAININGS_SHOWN)
    just_trained = None
    if training_id is not None:
        just_trained = next((t for t in trainings if t["trainingId"] == training_id), None)
        if just_trained is None:
            shown = training_id if _RUN_ID.match(training_id) else "?"
            raise PageError(404, f"Training '{shown}' not found in this workspace.")
    versions = {m["version"]: m for m in training.list_models(engine, ws)}
    response = render(
        request,
        "scoring/overview.html",
        user,
        nav="scoring",
        model=model,
        stages=stages,
        accounts=accounts,
        runs=runs,
        just_ran=just_ran,
        trainings=trainings,
        just_trained=just_trained,
        versions=versions,
        activated=activated,
        problem=problem,
    )
    response.status_code = status
    return response


@router.post("/scoring/train")
def start_training(
    request: Request,
    user: AdminWriter,
    horizon: Annotated[str, Form()] = "90",
) -> Response:
    """Train the predictive model as a worker job (as the API's POST /scoring/train)."""
    if not (horizon.strip().isascii() and horizon.strip().isdigit()):
        problem = f"horizon '{horizon[:20]}' must be a number of days"
        return _overview(request, user, problem=problem, status=400)
    try:
        tid = training.start(engine_of(request), user.workspace_id, int(horizon))
    except BadRequest as exc:
        return _overview(request, user, problem=exc.custom_message, status=400)
    from intently import worker  # the queue; the job runs in a worker process

    worker.train_model(user.workspace_id, tid, int(horizon), False, False)
    return RedirectResponse(f"/app/scoring?training={tid}#predictive", status_code=303)


@router.post("/scoring/activate")
def activate_model(
    request: Request,
    user: AdminWriter,
    version: Annotated[str, Form()] = "",
    force: Annotated[str | None, Form()] = None,
) -> Response:
    """Activate a stored model version (a rollback when older); refused when it backtests
    worse than the active one, unless forced."""
    if not (version.isascii() and version.isdigit()) or len(version) > 9:
        return _overview(request, user, problem="Choose a model version to activate.", status=400)
    try:
        out = training.activate_version(
            engine_of(request), user.workspace_id, int(version), force=bool(force)
        )
    except (Conflict, NotFound) as exc:
        return _overview(request, user, problem=exc.custom_message, status=exc.status)
    return RedirectResponse(f"/app/scoring?activated={out['version']}#predictive", status_code=303)


@router.get("/scoring/runs")
def runs_fragment(request: Request, user: Admin) -> Response:
    """The runs table alone: the overview polls it while a run is in progress."""
    return render(request, "scoring/_runs.html", user, runs=_runs(request, user.workspace_id))


@router.post("/scoring/runs")
def start_run(
    request: Request,
    user: AdminWriter,
    kind: Annotated[Literal["full", "incremental"], Form()] = "full",
) -> Response:
    # What the API's POST /scoring/runs does: the run happens now, in this request.
    summary = run_scoring(engine_of(request), user.workspace_id, full=kind == "full")
    return RedirectResponse(f"/app/scoring?run={summary.run_id}", status_code=303)


# ---- the model editor --------------------------------------------------------------------------


def _model_page(
    request: Request,
    user: Any,
    *,
    model: dict[str, Any],
    fields_model: dict[str, Any],
    text: str,
    problems: list[dict[str, str]] | None = None,
    editor: str = "fields",
    saved: int | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "scoring/model.html",
        user,
        status_code=status_code,
        nav="scoring",
        current=model,
        fm=fields_model,
        base=_pretty(fields_model),
        text=text,
        problems=problems or [],
        editor=editor,
        saved=saved,
        decay_kinds=DECAY_KINDS,
        builtin=BUILTIN_TYPES,
    )


@router.get("/scoring/model")
def model_editor(request: Request, user: Admin, saved: int | None = None) -> Response:
    current = service.get_model(engine_of(request), user.workspace_id)
    return _model_page(
        request,
        user,
        model=current,
        fields_model=current["model"],
        text=_pretty(current["model"]),
        saved=saved if saved is not None and saved == current["version"] else None,
    )


def _number(text: str) -> Any:
    """A form number as JSON would carry it; anything else stays text so that validation
    names the field and shows what was typed."""
    t = text.strip()
    if not _DECIMAL.match(t):
        return text
    return int(t) if "." not in t else float(t)


def _from_fields(form: dict[str, str]) -> tuple[Any, list[dict[str, str]]]:
    """(the base model with every form field put in place, problems so far)."""
    base, problems = _parse_json(form.get("base", ""), "base")
    if problems or not isinstance(base, dict) or not isinstance(base.get("sources"), dict):
        return (
            base,
            problems
            or [{"path": "base", "value": _shown(base), "text": "base must be a scoring model"}],
        )
    model = copy.deepcopy(base)
    for sname, src in model["sources"].items():
        if not isinstance(src, dict):
            continue
        p = f"sources.{sname}"
        for key in ("weight", "cap"):
            if f"{p}.{key}" in form:
                src[key] = _number(form[f"{p}.{key}"])
        types = src.get("types")
        if not isinstance(types, dict):
            continue
        for tname, typ in types.items():
            if not isinstance(typ, dict):
                continue
            tp = f"{p}.types.{tname}"
            if f"{tp}.present" in form:  # an unchecked box sends nothing: this says it was there
                typ["enabled"] = f"{tp}.enabled" in form
            for key in ("increment", "cap"):
                if f"{tp}.{key}" in form:
                    typ[key] = _number(form[f"{tp}.{key}"])
            if f"{tp}.unit" in form:
                typ["unit"] = form[f"{tp}.unit"]
            decay = typ.get("decay")
            if not isinstance(decay, dict):
                continue
            if f"{tp}.decay.kind" in form:
                decay["kind"] = form[f"{tp}.decay.kind"]
            if f"{tp}.decay.days" in form:
                decay["days"] = _number(form[f"{tp}.decay.days"])
            if f"{tp}.decay.percent" in form:
                percent = form[f"{tp}.decay.percent"].strip()
                if percent:
                    decay["percent"] = _number(percent)
                else:
                    decay.pop("percent", None)
    surge = model.get("surge")
    if isinstance(surge, dict):
        for key in ("recent_days", "baseline_days"):
            if f"surge.{key}" in form:
                surge[key] = _number(form[f"surge.{key}"])
    return model, []


def _proposed_model(form: dict[str, str]) -> tuple[str, Any, Any, str, list[dict[str, str]]]:
    """(editor, proposal, model for the fields form, text for the JSON form, problems)."""
    for name in ("model", "base"):
        if len(form.get(name, "")) > MAX_JSON:
            size = len(form[name])
            return "json", None, None, "", [
                {"path": name, "value": f"{size:,} characters",
                 "text": f"{name} must be at most {MAX_JSON:,} characters"}
            ]  # fmt: skip
    if form.get("editor") == "json":
        text = form.get("model", "")
        doc, problems = _parse_json(text, "model")
        return "json", doc, None, text, problems
    doc, problems = _from_fields(form)
    return "fields", doc, doc, _pretty(doc) if not problems else form.get("base", ""), problems


def _dry_run(request: Request, user: Any, what: str, doc: Any, problems: list[Any]) -> Response:
    """The dry-run fragment for a proposed model or stage list, or its problems."""
    return _dry_run_fragment(
        request,
        user,
        {what: doc},
        doc,
        problems,
        run=whatif.dry_run,
        template="scoring/_dry_run.html",
        chart=_dry_run_chart,
    )


@router.post("/scoring/model/dry-run")
def model_dry_run(request: Request, user: AdminWriter, form: FormFields) -> Response:
    """What saving the proposed model would change; nothing is stored."""
    _, doc, _, _, problems = _proposed_model(form)
    return _dry_run(request, user, "model", doc, problems)


@router.post("/scoring/model")
def save_model(request: Request, user: AdminWriter, form: FormFields) -> Response:
    current = service.get_model(engine_of(request), user.workspace_id)
    editor, doc, fields_model, text, problems = _proposed_model(form)
    done, problems = _save(
        request,
        user,
        doc,
        problems,
        current=current,
        form=form,
        put=service.put_model,
        editor_url="/app/scoring/model",
    )
    if done is not None:
        return done
    usable = isinstance(fields_model, dict) and isinstance(fields_model.get("sources"), dict)
    return _model_page(
        request,
        user,
        model=current,
        fields_model=fields_model if usable else current["model"],
        text=text,
        problems=problems,
        editor=editor,
        status_code=_refused_status(problems),
    )


def _dry_run_chart(r: dict[str, Any]) -> dict[str, Any]:
    return band_chart(
        "dry-run",
        "Accounts per account-score band",
        r["scoreBefore"]["buckets"],
        r["scoreAfter"]["buckets"],
    )


# ---- the stage editor -----------------------------------------------------------------------


def _stages_page(
    request: Request,
    user: Any,
    *,
    current: dict[str, Any],
    text: str,
    problems: list[dict[str, str]] | None = None,
    saved: int | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "scoring/stages.html",
        user,
        status_code=status_code,
        nav="scoring",
        current=current,
        rules=[
            {"name": s["name"], "rule": _pretty(s["rule"]) if "rule" in s else None}
            for s in current["stages"]
        ],
        text=text,
        problems=problems or [],
        saved=saved,
    )


def _definition(current: dict[str, Any]) -> dict[str, Any]:
    return {"stages": current["stages"], "dealStages": current["dealStages"]}


@router.get("/scoring/stages")
def stages_editor(request: Request, user: Admin, saved: int | None = None) -> Response:
    current = stages_service.get_stages(engine_of(request), user.workspace_id)
    return _stages_page(
        request,
        user,
        current=current,
        text=_pretty(_definition(current)),
        saved=saved if saved is not None and saved == current["version"] else None,
    )


@router.post("/scoring/stages/dry-run")
def stages_dry_run(request: Request, user: AdminWriter, form: FormFields) -> Response:
    """Where accounts would move under the proposed stage list; nothing is stored."""
    _, doc, problems = _proposed_json(form, "stages")
    return _dry_run(request, user, "stages", doc, problems)


@router.post("/scoring/stages")
def save_stages(request: Request, user: AdminWriter, form: FormFields) -> Response:
    return _save_json(
        request,
        user,
        form,
        field="stages",
        current=stages_service.get_stages(engine_of(request), user.workspace_id),
        put=stages_service.put_stages,
        editor_url="/app/scoring/stages",
        page=_stages_page,
    )


# ---- backtest --------------------------------------------------------------------------------


def _backtest_input(as_of: str, horizon: str) -> tuple[date | None, int, list[str]]:
    errors: list[str] = []
    day: date | None = None
    try:
        day = date.fromisoformat(as_of.strip())
    except ValueError:
        errors.append(f"asOf: '{as_of[:40]}' is not a date (YYYY-MM-DD)")
    text = horizon.strip()
    days = 90
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 3650:
        errors.append(f"horizonDays: '{horizon[:40]}' must be an integer from 1 to 3650")
    else:
        days = int(text)
    if day is not None and day >= datetime.now(UTC).date():
        errors.append(f"asOf: '{day.isoformat()}' must be a day in the past")
    return day, days, errors


@router.get("/scoring/backtest")
def backtest(
    request: Request,
    user: Admin,
    asOf: str | None = None,
    horizonDays: str = "90",
) -> Response:
    default_day = (datetime.now(UTC).date() - timedelta(days=90)).isoformat()
    report = None
    errors: list[str] = []
    if asOf is not None:
        day, days, errors = _backtest_input(asOf, horizonDays)
        if not errors and day is not None:
            with request.app.state.intently.previews.hold(user.workspace_id):
                report = whatif.backtest(
                    engine_of(request), user.workspace_id, as_of=day, horizon_days=days
                )
    return render(
        request,
        "scoring/backtest.html",
        user,
        status_code=400 if errors else 200,
        nav="scoring",
        as_of=asOf if asOf is not None else default_day,
        horizon=horizonDays,
        errors=errors,
        r=report,
        chart=_backtest_chart(report) if report and report["accounts"] else None,
    )


def _backtest_chart(r: dict[str, Any]) -> dict[str, Any]:
    # Fallback last in the list, purchase first: show the journey left to right.
    stages = list(reversed(r["stages"]))
    return {
        "id": _chart_id("backtest"),
        "config": {
            "type": "bar",
            "data": {
                "labels": [s["stage"] for s in stages],
                "datasets": [
                    {
                        "type": "bar",
                        "label": "Converted (%)",
                        "data": [
                            round(100 * s["conversion"], 2) if s["conversion"] is not None else 0
                            for s in stages
                        ],
                        "backgroundColor": "#3b5bdb",
                        "yAxisID": "y",
                    },
                    {
                        "type": "line",
                        "label": "Accounts",
                        "data": [s["accounts"] for s in stages],
                        "borderColor": "#e67700",
                        "backgroundColor": "#e67700",
                        "yAxisID": "y1",
                    },
                    {
                        "type": "line",
                        "label": "Base rate (%)",
                        "data": [round(100 * (r["baseRate"] or 0), 2)] * len(stages),
                        "borderColor": "#868e96",
                        "borderDash": [6, 4],
                        "pointRadius": 0,
                        "yAxisID": "y",
                    },
                ],
            },
            "options": {
                "plugins": {
                    "title": {"display": True, "text": "Deal conversion by stage at the cut-off"}
                },
                "scales": {
                    "y": {
                        "beginAtZero": True,
                        "title": {"display": True, "text": "converted %"},
                    },
                    "y1": {
                        "beginAtZero": True,
                        "position": "right",
                        "grid": {"drawOnChartArea": False},
                        "ticks": {"precision": 0},
                        "title": {"display": True, "text": "accounts"},
                    },
                },
            },
        },
    }
