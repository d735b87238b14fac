"""The ICP fit model editor (admins only): the model as JSON, a dry run before saving, and
the save as a new version; a tab of the scoring pages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from intently.fit import service
from intently.kit.errors import ValidationFailed
from intently.web.session import Admin, AdminWriter, engine_of
from intently.web.templating import render
from intently.web.views.scoring import (
    MAX_JSON,
    FormFields,
    _chart_id,
    _parse_json,
    _pretty,
    _problems,
    _stale,
)

router = APIRouter()


def _page(
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
        "scoring/fit.html",
        user,
        status_code=status_code,
        nav="scoring",
        current=current,
        text=text,
        problems=problems or [],
        saved=saved,
    )


@router.get("/scoring/fit")
def fit_editor(request: Request, user: Admin, saved: int | None = None) -> Response:
    current = service.get_model(engine_of(request), user.workspace_id)
    return _page(
        request,
        user,
        current=current,
        text=_pretty(current["model"]),
        saved=saved if saved is not None and saved == current["version"] else None,
    )


def _proposed(form: dict[str, str]) -> tuple[str, Any, list[dict[str, str]]]:
    text = form.get("model", "")
    if len(text) > MAX_JSON:
        return "", None, [
            {"path": "model", "value": f"{len(text):,} characters",
             "text": f"model must be at most {MAX_JSON:,} characters"}
        ]  # fmt: skip
    doc, problems = _parse_json(text, "model")
    return text, doc, problems


@router.post("/scoring/fit/dry-run")
def fit_dry_run(request: Request, user: AdminWriter, form: FormFields) -> Response:
    """What saving the proposed fit model would change; nothing is stored."""
    _, doc, problems = _proposed(form)
    if not problems:
        try:
            with request.app.state.intently.previews.hold(user.workspace_id):
                report = service.dry_run(engine_of(request), user.workspace_id, {"model": doc})
        except ValidationFailed as exc:
            problems = _problems(exc, doc)
    if problems:
        return render(request, "scoring/_problems.html", user, status_code=400, problems=problems)
    return render(request, "scoring/_fit_dry_run.html", user, r=report, chart=_chart(report))


@router.post("/scoring/fit")
def save_fit(request: Request, user: AdminWriter, form: FormFields) -> Response:
    engine = engine_of(request)
    current = service.get_model(engine, user.workspace_id)
    text, doc, problems = _proposed(form)
    problems = problems or _stale(current["version"], form.get("version"))
    if not problems:
        try:
            saved = service.put_model(engine, user.workspace_id, doc)
        except ValidationFailed as exc:
            problems = _problems(exc, doc)
        else:
            return RedirectResponse(f"/app/scoring/fit?saved={saved['version']}", status_code=303)
    return _page(
        request,
        user,
        current=current,
        text=text,
        problems=problems,
        status_code=409 if problems and problems[0]["path"] == "version" else 400,
    )


def _chart(r: dict[str, Any]) -> dict[str, Any]:
    before, after = r["fitBefore"]["buckets"], r["fitAfter"]["buckets"]
    return {
        "id": _chart_id("fit-dry-run"),
        "config": {
            "type": "bar",
            "data": {
                "labels": [f"{b['from']}-{b['to']}" for b in before or after],
                "datasets": [
                    {"label": "Now", "data": [b["accounts"] for b in before],
                     "backgroundColor": "#adb5bd"},
                    {"label": "Proposed", "data": [b["accounts"] for b in after],
                     "backgroundColor": "#3b5bdb"},
                ],
            },
            "options": {
                "plugins": {"title": {"display": True, "text": "Accounts per fit-score band"}},
                "scales": {"y": {"beginAtZero": True, "ticks": {"precision": 0}}},
            },
        },
    }  # fmt: skip
