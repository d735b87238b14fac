from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from intently.auth.endpoints import CallerDep
from intently.events import service
from intently.events.schemas import ThresholdsIn
from intently.kit.pagination import parse_limit
from intently.kit.validation import validate
from intently.kit.web import (
    CURSOR_DOC,
    LIMIT_DOC,
    JsonBody,
    State,
    body_doc,
    ok,
    query_doc,
    run_read,
)


def router() -> APIRouter:
    r = APIRouter(tags=["events"])

    @r.get(
        "/events",
        openapi_extra=query_doc(
            LIMIT_DOC,
            CURSOR_DOC,
            ("type", "comma list of event types"),
            ("since", "ISO 8601: events at or after this instant"),
            ("rtp_aid", "only this account's events"),
        ),
    )
    async def list_events(request: Request, st: State, caller: CallerDep) -> Response:
        """Change events, oldest first; `pollCursor` is where the next poll resumes."""
        q = request.query_params
        result = await run_read(
            st,
            service.list_events,
            st.engine,
            st.codec,
            caller.workspace_id,
            limit=parse_limit(q.get("limit")),
            cursor=q.get("cursor"),
            type_filter=q.get("type"),
            since=q.get("since"),
            account=q.get("rtp_aid"),
        )
        return ok(request, result)

    @r.get("/events/{event_id}")
    async def get_event(request: Request, event_id: str, st: State, caller: CallerDep) -> Response:
        """One event."""
        return ok(
            request, await run_read(st, service.get_event, st.engine, caller.workspace_id, event_id)
        )

    @r.get("/score-thresholds")
    async def get_thresholds(request: Request, st: State, caller: CallerDep) -> Response:
        """The score thresholds whose crossing records `score.threshold_crossed`."""
        return ok(
            request, await run_read(st, service.get_thresholds, st.engine, caller.workspace_id)
        )

    @r.put("/score-thresholds", openapi_extra=body_doc(ThresholdsIn))
    def put_thresholds(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """Replace the thresholds (up to 50); they apply from the next scoring run."""
        items = [t.model_dump() for t in validate(ThresholdsIn, body).thresholds]
        return ok(request, service.put_thresholds(st.engine, caller.workspace_id, items))

    return r
