from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from intently.auth.endpoints import CallerDep
from intently.deals import service
from intently.deals.schemas import DealsPush
from intently.kit.validation import validate
from intently.kit.web import JsonBody, State, body_doc, ok, run_read


def router() -> APIRouter:
    r = APIRouter(tags=["deals"])

    @r.post("/deals", openapi_extra=body_doc(DealsPush))
    def push_deals(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """E6: upsert up to 100 deals by externalDealId."""
        results = service.push_deals(
            st.engine, caller.workspace_id, validate(DealsPush, body, st.settings, batch="deals")
        )
        return ok(request, {"results": results})

    @r.get("/accounts/{rtp_aid}/deals")
    async def account_deals(
        request: Request, rtp_aid: str, st: State, caller: CallerDep
    ) -> Response:
        """Extension: the deals linked to an account (by externalId, else domain)."""
        return ok(
            request,
            await run_read(st, service.deals_of_account, st.engine, caller.workspace_id, rtp_aid),
        )

    return r
