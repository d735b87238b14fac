from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from intently.auth.endpoints import CallerDep
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
from intently.signals import service
from intently.signals.schemas import CustomSourceIn, SignalsPush, SourceSettingsPut


def router() -> APIRouter:
    r = APIRouter(tags=["signals"])

    @r.post("/signals", openapi_extra=body_doc(SignalsPush))
    def push_signals(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """Generic intent signals, 1 to 1000; per-item results."""
        results = service.push_signals(st.engine, caller.workspace_id, validate(SignalsPush, body))
        return ok(request, {"results": results})

    @r.get(
        "/accounts/{rtp_aid}/signals",
        openapi_extra=query_doc(LIMIT_DOC, CURSOR_DOC, ("source", "only this source")),
    )
    async def account_signals(
        request: Request, rtp_aid: str, st: State, caller: CallerDep
    ) -> Response:
        """The account's signals (matched by its domain), newest first."""
        q = request.query_params
        result = await run_read(
            st,
            service.account_signals,
            st.engine,
            st.codec,
            caller.workspace_id,
            rtp_aid,
            limit=parse_limit(q.get("limit")),
            cursor=q.get("cursor"),
            source=q.get("source") or None,
        )
        return ok(request, result)

    @r.get("/sources")
    async def list_sources(request: Request, st: State, caller: CallerDep) -> Response:
        """The built-in sources with their settings, and the workspace's custom sources."""
        return ok(request, await run_read(st, service.list_sources, st.engine, caller.workspace_id))

    @r.post("/sources", openapi_extra=body_doc(CustomSourceIn))
    def register_source(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """Register a custom source name for POST /signals (201 when new, 200 when known)."""
        data, created = service.register_source(
            st.engine, caller.workspace_id, validate(CustomSourceIn, body).name
        )
        return ok(request, data, 201 if created else 200)

    @r.get("/sources/{source}/settings")
    async def get_settings(request: Request, source: str, st: State, caller: CallerDep) -> Response:
        """A built-in source's settings for this workspace (defaults where never set)."""
        return ok(
            request,
            await run_read(st, service.get_source_settings, st.engine, caller.workspace_id, source),
        )

    @r.put("/sources/{source}/settings", openapi_extra=body_doc(SourceSettingsPut))
    def put_settings(
        request: Request, source: str, st: State, caller: CallerDep, body: JsonBody
    ) -> Response:
        """Change some of a source's settings; the result is validated as a whole."""
        return ok(
            request, service.put_source_settings(st.engine, caller.workspace_id, source, body)
        )

    @r.get(
        "/ingest/runs",
        openapi_extra=query_doc(LIMIT_DOC, CURSOR_DOC, ("source", "only this source")),
    )
    async def list_runs(request: Request, st: State, caller: CallerDep) -> Response:
        """Imports and pulls with their counts, newest first."""
        q = request.query_params
        result = await run_read(
            st,
            service.list_runs,
            st.engine,
            st.codec,
            caller.workspace_id,
            limit=parse_limit(q.get("limit")),
            cursor=q.get("cursor"),
            source=q.get("source") or None,
        )
        return ok(request, result)

    @r.get("/ingest/runs/{run_id}")
    async def get_run(request: Request, run_id: str, st: State, caller: CallerDep) -> Response:
        """One import or pull and its report."""
        return ok(
            request, await run_read(st, service.get_run, st.engine, caller.workspace_id, run_id)
        )

    @r.get(
        "/ingest/rejects",
        openapi_extra=query_doc(
            LIMIT_DOC,
            CURSOR_DOC,
            ("source", "only this source"),
            ("reason", "only this reason"),
            ("runId", "only this run"),
            ("status", "open (default), reapplied or all"),
        ),
    )
    async def list_rejects(request: Request, st: State, caller: CallerDep) -> Response:
        """Rows and events that could not be used, with line, reason and record."""
        q = request.query_params
        result = await run_read(
            st,
            service.list_rejects,
            st.engine,
            st.codec,
            caller.workspace_id,
            limit=parse_limit(q.get("limit")),
            cursor=q.get("cursor"),
            filters={k: (q.get(k) or None) for k in service.REJECT_FILTERS},
        )
        return ok(request, result)

    return r
