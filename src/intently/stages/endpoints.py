from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from intently.auth.endpoints import CallerDep
from intently.kit.validation import Strict
from intently.kit.web import JsonBody, State, body_doc, ok, run_read
from intently.stages import service


class StageListDoc(Strict):
    """The stage list, nearest to purchase first; the last stage is the fallback (no rule)."""

    stages: list[dict[str, Any]]
    dealStages: dict[str, list[str]] | None = None


def router() -> APIRouter:
    r = APIRouter(tags=["stages"])

    @r.get("/stages")
    async def get_stages(request: Request, st: State, caller: CallerDep) -> Response:
        """The workspace's journey stages (the documented default until one is saved)."""
        return ok(request, await run_read(st, service.get_stages, st.engine, caller.workspace_id))

    @r.put("/stages", openapi_extra=body_doc(StageListDoc))
    def put_stages(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """Replace the stage list (a new version); every problem of an invalid one is named."""
        return ok(request, service.put_stages(st.engine, caller.workspace_id, body))

    @r.get("/accounts/{rtp_aid}/stage-changes")
    async def stage_changes(
        request: Request, rtp_aid: str, st: State, caller: CallerDep
    ) -> Response:
        """Every change of the account's stage, newest first, with the rule that fired."""
        return ok(
            request,
            await run_read(st, service.stage_changes_of, st.engine, caller.workspace_id, rtp_aid),
        )

    @r.get("/accounts/{rtp_aid}/history")
    async def history(request: Request, rtp_aid: str, st: State, caller: CallerDep) -> Response:
        """Score and stage per day (the days they changed, last 365) and every stage change."""
        return ok(
            request,
            await run_read(st, service.history_of, st.engine, caller.workspace_id, rtp_aid),
        )

    return r
