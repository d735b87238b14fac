from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from intently.auth.endpoints import CallerDep
from intently.fit import service
from intently.fit.schemas import FitDryRunIn, FitModelIn
from intently.kit.web import JsonBody, State, body_doc, ok, run_read


def router() -> APIRouter:
    r = APIRouter(tags=["fit"])

    @r.get("/fit/model")
    async def get_model(request: Request, st: State, caller: CallerDep) -> Response:
        """The active ICP fit model and its version (0: the default, never changed)."""
        return ok(request, await run_read(st, service.get_model, st.engine, caller.workspace_id))

    @r.put("/fit/model", openapi_extra=body_doc(FitModelIn))
    def put_model(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """Replace the fit model: validated as a whole, stored as a new version; scoring runs
        apply it from the next one."""
        return ok(request, service.put_model(st.engine, caller.workspace_id, body))

    @r.post("/fit/dry-run", openapi_extra=body_doc(FitDryRunIn))
    def dry_run(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """What saving a proposed fit model would change (fit scores, grade moves); nothing
        is saved. A few at once per workspace (else 429), as rule previews."""
        with st.previews.hold(caller.workspace_id):
            return ok(request, service.dry_run(st.engine, caller.workspace_id, body))

    return r
