"""The ICP fit model editor (admins only): the model as JSON, a dry run before saving, and
the save as a new version; a tab of the scoring pages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from intently.fit import service
from intently.web.session import Admin, AdminWriter, engine_of
from intently.web.templating import render
from intently.web.views.scoring import (
    FormFields,
    _dry_run_fragment,
    _pretty,
    _proposed_json,
    _save_json,
    band_chart,
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


@router.post("/scoring/fit/dry-run")
def fit_dry_run(request: Request, user: AdminWriter, form: FormFields) -> Response:
    """What saving the proposed fit model would change; nothing is stored."""
    _, doc, problems = _proposed_json(form, "model")
    return _dry_run_fragment(
        request,
        user,
        {"model": doc},
        doc,
        problems,
        run=service.dry_run,
        template="scoring/_fit_dry_run.html",
        chart=_chart,
    )


@router.post("/scoring/fit")
def save_fit(request: Request, user: AdminWriter, form: FormFields) -> Response:
    return _save_json(
        request,
        user,
        form,
        field="model",
        current=service.get_model(engine_of(request), user.workspace_id),
        put=service.put_model,
        editor_url="/app/scoring/fit",
        page=_page,
    )


def _chart(r: dict[str, Any]) -> dict[str, Any]:
    return band_chart(
        "fit-dry-run",
        "Accounts per fit-score band",
        r["fitBefore"]["buckets"],
        r["fitAfter"]["buckets"],
    )
