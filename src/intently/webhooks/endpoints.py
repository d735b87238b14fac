from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
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
from intently.webhooks import service
from intently.webhooks.schemas import WebhookIn, WebhookPatch


def router() -> APIRouter:
    r = APIRouter(tags=["webhooks"])

    @r.post("/webhooks", openapi_extra=body_doc(WebhookIn), status_code=201)
    def create_webhook(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """Extension: register a webhook; the answer carries its signing secret, once."""
        hook = service.create(
            st.engine, st.settings, caller.workspace_id, validate(WebhookIn, body)
        )
        return ok(request, hook, 201)

    @r.get("/webhooks", openapi_extra=query_doc(LIMIT_DOC, CURSOR_DOC))
    async def list_webhooks(request: Request, st: State, caller: CallerDep) -> Response:
        """Extension: the workspace's webhooks (secrets left out)."""
        q = request.query_params
        result = await run_read(
            st,
            service.list_webhooks,
            st.engine,
            st.codec,
            caller.workspace_id,
            limit=parse_limit(q.get("limit")),
            cursor=q.get("cursor"),
        )
        return ok(request, result)

    @r.get("/webhooks/{webhook_id}")
    async def get_webhook(
        request: Request, webhook_id: str, st: State, caller: CallerDep
    ) -> Response:
        """Extension: one webhook, why it is disabled if it is, and its delivery counts."""
        return ok(
            request, await run_read(st, service.get, st.engine, caller.workspace_id, webhook_id)
        )

    @r.patch("/webhooks/{webhook_id}", openapi_extra=body_doc(WebhookPatch))
    def patch_webhook(
        request: Request, webhook_id: str, st: State, caller: CallerDep, body: JsonBody
    ) -> Response:
        """Extension: change url, eventTypes, description or status (active resumes it)."""
        change = validate(WebhookPatch, body)
        return ok(
            request,
            service.patch(st.engine, st.settings, caller.workspace_id, webhook_id, change),
        )

    @r.delete("/webhooks/{webhook_id}")
    def delete_webhook(request: Request, webhook_id: str, st: State, caller: CallerDep) -> Response:
        """Extension: remove a webhook with its deliveries and their attempts."""
        return ok(request, service.remove(st.engine, caller.workspace_id, webhook_id))

    @r.post("/webhooks/{webhook_id}/rotate-secret")
    def rotate_secret(request: Request, webhook_id: str, st: State, caller: CallerDep) -> Response:
        """Extension: a new signing secret, answered once; the old one stops at once."""
        return ok(request, service.rotate_secret(st.engine, caller.workspace_id, webhook_id))

    @r.post("/webhooks/{webhook_id}/test")
    async def test_webhook(
        request: Request, webhook_id: str, st: State, caller: CallerDep
    ) -> Response:
        """Extension: send a `webhook.test` ping now and answer how the receiver took it."""
        result = await run_in_threadpool(
            service.send_test, st.engine, st.settings, caller.workspace_id, webhook_id
        )
        return ok(request, result)

    @r.get(
        "/webhooks/{webhook_id}/deliveries",
        openapi_extra=query_doc(
            LIMIT_DOC, CURSOR_DOC, ("status", "comma list of pending, delivered, failed")
        ),
    )
    async def list_deliveries(
        request: Request, webhook_id: str, st: State, caller: CallerDep
    ) -> Response:
        """Extension: a webhook's deliveries, newest first, each with its attempts."""
        q = request.query_params
        result = await run_read(
            st,
            service.list_deliveries,
            st.engine,
            st.codec,
            caller.workspace_id,
            webhook_id,
            limit=parse_limit(q.get("limit")),
            cursor=q.get("cursor"),
            status=q.get("status"),
        )
        return ok(request, result)

    @r.get("/webhooks/{webhook_id}/deliveries/{delivery_id}")
    async def get_delivery(
        request: Request, webhook_id: str, delivery_id: str, st: State, caller: CallerDep
    ) -> Response:
        """Extension: one delivery with its attempts."""
        result = await run_read(
            st, service.get_delivery, st.engine, caller.workspace_id, webhook_id, delivery_id
        )
        return ok(request, result)

    @r.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/retry")
    def retry_delivery(
        request: Request, webhook_id: str, delivery_id: str, st: State, caller: CallerDep
    ) -> Response:
        """Extension: a failed delivery goes again, due now, with a fresh set of tries."""
        return ok(
            request,
            service.retry_delivery(st.engine, caller.workspace_id, webhook_id, delivery_id),
        )

    return r
