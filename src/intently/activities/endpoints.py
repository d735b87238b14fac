from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from intently.activities import service
from intently.activities.schemas import ActivitiesPush
from intently.auth.endpoints import CallerDep
from intently.kit.validation import validate
from intently.kit.web import JsonBody, State, body_doc, ok, run_read


def router() -> APIRouter:
    r = APIRouter(tags=["sales activities"])

    @r.post("/sales-activities", openapi_extra=body_doc(ActivitiesPush))
    def push_activities(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """E7: create up to 50 call and email activities."""
        results = service.push_activities(
            st.engine,
            caller.workspace_id,
            validate(ActivitiesPush, body, st.settings, batch="activities"),
        )
        return ok(request, {"results": results})

    @r.get("/accounts/{rtp_aid}/activities")
    async def account_activities(
        request: Request, rtp_aid: str, st: State, caller: CallerDep
    ) -> Response:
        """Extension: an account's sales activities, newest first (up to 1000)."""
        return ok(
            request,
            await run_read(
                st, service.activities_of_account, st.engine, caller.workspace_id, rtp_aid
            ),
        )

    return r
