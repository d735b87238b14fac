"""Accounts: the ranked table with its filters and CSV export, and the account page."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.responses import Response

from intently.accounts import ranking
from intently.accounts.service import get_account
from intently.activities.service import activities_of_account
from intently.catalog import ACCOUNT_SCORE, ALL_SCORES, SCORE_LABELS
from intently.deals.service import deals_of_account
from intently.kit.csvout import CsvWriter
from intently.kit.errors import BadRequest
from intently.kit.pagination import Cursor, CursorCodec
from intently.kit.timefmt import format_ms, now_us
from intently.scoring.explain import explain
from intently.signals.service import account_signals
from intently.stages.service import history_of
from intently.web.session import PageError, Viewer, engine_of, is_htmx
from intently.web.templating import render

router = APIRouter()

_LIST = "web-accounts"
_FILTERS = (
    "stage", "segment", "score_min", "score_max", "source", "tag", "q", "fit_min",
    "industry", "country", "employees_min", "grade",
)  # fmt: skip
EXPORT_PAGE = 1000
TIMELINE_PAGE = 50


def _codec(request: Request) -> CursorCodec:
    codec: CursorCodec = request.app.state.intently.codec
    return codec


def _number(name: str, raw: str | None) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} should be a number from 0 to 100; got '{raw}'") from None
    if value != value:  # NaN
        raise BadRequest(f"{name} should be a number from 0 to 100; got '{raw}'")
    return value


def _whole(name: str, raw: str | None) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise BadRequest(f"{name} should be a whole number; got '{raw[:40]}'") from None


def _text(name: str, raw: str | None, limit: int = 200) -> str | None:
    if raw is None or not raw.strip():
        return None
    if len(raw) > limit:
        raise BadRequest(f"{name} should be at most {limit} characters; got '{raw[:40]}...'")
    return raw.strip()


def _filters(request: Request) -> tuple[ranking.Filters, dict[str, str]]:
    q = request.query_params
    f = ranking.Filters(
        stage=_text("stage", q.get("stage")),
        segment=_text("segment", q.get("segment"), 24),
        score_min=_number("score_min", q.get("score_min")),
        score_max=_number("score_max", q.get("score_max")),
        source=_text("source", q.get("source")),
        tag=_text("tag", q.get("tag")),
        q=_text("q", q.get("q")),
        fit_min=_number("fit_min", q.get("fit_min")),
        industry=_text("industry", q.get("industry")),
        country=_text("country", q.get("country"), 2),
        employees_min=_whole("employees_min", q.get("employees_min")),
        grade=_text("grade", q.get("grade"), 8),
    )
    f.check()
    given = {k: q[k] for k in _FILTERS if q.get(k, "").strip()}
    return f, given


def _after(request: Request, ws: int) -> tuple[float, str] | None:
    token = request.query_params.get("after")
    if not token:
        return None
    cursor = _codec(request).decode(token, _LIST, ws)
    score, _, aid = cursor.after.partition("|")
    return float(score), aid


@router.get("/accounts")
def accounts_page(request: Request, user: Viewer) -> Response:
    engine = engine_of(request)
    f, given = _filters(request)
    rows, key = ranking.ranked_page(
        engine, user.workspace_id, f, after=_after(request, user.workspace_id), now_us=now_us()
    )
    next_url = None
    if key is not None:
        token = _codec(request).encode(Cursor(_LIST, user.workspace_id, f"{key[0]!r}|{key[1]}"))
        next_url = "/app/accounts?" + urlencode({**given, "after": token})
    context: dict[str, Any] = {
        "rows": rows,
        "given": given,
        "next_url": next_url,
        "first_url": "/app/accounts?" + urlencode(given),
        "paged": "after" in request.query_params,
        "export_url": "/app/accounts/export.csv?" + urlencode(given),
        "capped": bool(f.q) and ranking.search_is_capped(engine, user.workspace_id, f.q or ""),
        "cap": ranking.SEARCH_CANDIDATES,
    }
    if is_htmx(request) and request.headers.get("HX-Target") == "results":
        return render(request, "accounts/results.html", user, **context)
    context["choices"] = ranking.filter_choices(engine, user.workspace_id)
    return render(request, "accounts/list.html", user, nav="accounts", **context)


_EXPORT_COLUMNS = (
    "rtp_aid",
    "name",
    "domain",
    *ALL_SCORES,
    "rtp_journey_stage",
    "score_change_7d",
    "last_activity",
    "tags",
    "segments",
)


@router.get("/accounts/export.csv")
def export_accounts(request: Request, user: Viewer) -> Response:
    """Every account the filters select, in score order, as CSV (streamed page by page)."""
    engine = engine_of(request)
    f, _ = _filters(request)
    ws = user.workspace_id
    now = now_us()

    def lines() -> Iterator[str]:
        buf = io.StringIO()
        # Opened in a spreadsheet: a name like "=HYPERLINK(...)" must stay text.
        out = CsvWriter(buf, defuse=True)
        out.writerow(_EXPORT_COLUMNS)
        after: tuple[float, str] | None = None
        while True:
            rows, after = ranking.ranked_page(
                engine, ws, f, after=after, limit=EXPORT_PAGE, now_us=now
            )
            for r in rows:
                out.writerow(
                    (
                        r.rtp_aid,
                        r.name,
                        r.domain,
                        r.score,
                        r.website,
                        r.bombora,
                        r.g2,
                        r.advertising,
                        r.stage or "",
                        "" if r.trend is None else round(r.trend, 2),
                        _iso(r.last_activity),
                        ";".join(r.tags),
                        ";".join(r.segments),
                    )
                )
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
            if after is None:
                return

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="accounts.csv"'},
    )


def _iso(us: int | None) -> str:
    return format_ms(us) if us else ""


@router.get("/accounts/{rtp_aid}")
def account_page(request: Request, rtp_aid: str, user: Viewer) -> Response:
    engine = engine_of(request)
    ws = user.workspace_id
    item = json.loads(bytes(get_account(engine, ws, rtp_aid)))
    why = explain(engine, ws, rtp_aid)
    history = history_of(engine, ws, rtp_aid, days=180)
    signals = account_signals(
        engine, _codec(request), ws, rtp_aid, limit=TIMELINE_PAGE, cursor=None, source=None
    )
    deals = deals_of_account(engine, ws, rtp_aid)
    activities = activities_of_account(engine, ws, rtp_aid)
    contacts: dict[str, dict[str, Any]] = {}
    for act in activities:
        for c in act.get("contacts") or []:
            key = str(c.get("email") or c.get("name") or "")
            if key:
                contacts.setdefault(key, c)
    return render(
        request,
        "accounts/detail.html",
        user,
        nav="accounts",
        item=item,
        why=why,
        history=history,
        history_chart=_history_chart(history),
        explain_chart=_explain_chart(why),
        signals=signals,
        deals=deals,
        activities=activities,
        contacts=list(contacts.values()),
    )


@router.get("/accounts/{rtp_aid}/signals")
def account_signals_more(request: Request, rtp_aid: str, user: Viewer) -> Response:
    """The next page of the signal timeline (htmx "show more")."""
    cursor = request.query_params.get("cursor")
    if not cursor:
        raise PageError(400, "cursor is required")
    signals = account_signals(
        engine_of(request),
        _codec(request),
        user.workspace_id,
        rtp_aid,
        limit=TIMELINE_PAGE,
        cursor=cursor,
        source=None,
    )
    return render(request, "accounts/timeline.html", user, signals=signals, rtp_aid=rtp_aid)


def _history_chart(history: dict[str, Any]) -> dict[str, Any]:
    days = history["days"]
    return {
        "type": "line",
        "data": {
            "labels": [d["date"] for d in days],
            "datasets": [
                {
                    "label": SCORE_LABELS[ACCOUNT_SCORE],
                    "data": [d["score"] for d in days],
                    "borderColor": "#3b5bdb",
                    "backgroundColor": "rgba(59,91,219,0.12)",
                    "fill": True,
                    "stepped": True,
                    "pointRadius": 2,
                }
            ],
        },
        "options": {
            "scales": {"y": {"min": 0, "max": 100}},
            "plugins": {"legend": {"display": False}},
        },
    }


def _explain_chart(why: dict[str, Any]) -> dict[str, Any]:
    sources = [s for s in why["sources"] if s["countsInAccountScore"]]
    return {
        "type": "bar",
        "data": {
            "labels": [s["source"] for s in sources],
            "datasets": [
                {
                    "label": "Sub-score",
                    "data": [round(s["subScore"], 2) for s in sources],
                    "backgroundColor": "#748ffc",
                }
            ],
        },
        "options": {
            "indexAxis": "y",
            "scales": {"x": {"min": 0, "max": 100}},
            "plugins": {"legend": {"display": False}},
        },
    }
