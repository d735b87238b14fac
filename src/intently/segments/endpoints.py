from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from intently.auth.endpoints import CallerDep
from intently.kit.body import csv_text
from intently.kit.errors import validation_error
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
from intently.segments import service, upload
from intently.segments.schemas import STATUSES, MembersChange, PreviewIn, SegmentIn, SegmentPatch

CsvText = Annotated[str, Depends(csv_text)]


def _types(raw: str | None) -> list[str]:
    if raw is None:
        return ["static"]
    value = raw.strip()
    if value == "all":
        return ["static", "dynamic"]
    if value in ("static", "dynamic"):
        return [value]
    raise validation_error(
        "type", "type", "isIn", "type must be one of the following values: static, dynamic, all"
    )


def _statuses(raw: str | None) -> list[str]:
    if raw is None:
        return ["active", "draft"]
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if not values or any(v not in STATUSES for v in values):
        raise validation_error(
            "status",
            "status",
            "isIn",
            "each value in status must be one of the following values: active, draft, archived",
        )
    return list(dict.fromkeys(values))


def router() -> APIRouter:
    r = APIRouter(tags=["segments"])

    @r.get(
        "/segments",
        openapi_extra=query_doc(
            LIMIT_DOC,
            CURSOR_DOC,
            ("type", "static (default), dynamic or all"),
            ("status", "comma list of active, draft, archived (default active,draft)"),
        ),
    )
    async def list_segments(request: Request, st: State, caller: CallerDep) -> Response:
        """E10: static segments that are active or draft (type and status widen it)."""
        q = request.query_params
        limit, cursor, type, status = (
            q.get("limit"),
            q.get("cursor"),
            q.get("type"),
            q.get("status"),
        )
        result = await run_read(
            st,
            service.list_segments,
            st.engine,
            st.codec,
            caller.workspace_id,
            limit=parse_limit(limit),
            cursor=cursor,
            types=_types(type),
            statuses=_statuses(status),
            with_type=type is not None or status is not None,
        )
        return ok(request, result)

    @r.post("/segments", openapi_extra=body_doc(SegmentIn), status_code=201)
    def create_segment(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """Extension: create a segment."""
        return ok(
            request, service.create(st.engine, caller.workspace_id, validate(SegmentIn, body)), 201
        )

    @r.post("/segments/preview", openapi_extra=body_doc(PreviewIn))
    def preview_segment(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """Extension: how many accounts a rule matches now, and the first of them. Stopped
        after settings.preview_timeout_s (422); a few at once per workspace (else 429)."""
        ws = caller.workspace_id
        with st.previews.hold(ws):
            found = service.preview(
                st.engine, ws, validate(PreviewIn, body), time_limit_s=st.settings.preview_timeout_s
            )
        return ok(request, found)

    @r.post("/segments/refresh")
    def refresh_all(request: Request, st: State, caller: CallerDep) -> Response:
        """Extension: recompute every live dynamic segment's membership now."""
        return ok(request, service.refresh(st.engine, caller.workspace_id))

    @r.post("/segments/{segment_id}/refresh")
    def refresh_segment(
        request: Request, segment_id: str, st: State, caller: CallerDep
    ) -> Response:
        """Extension: recompute one dynamic segment's membership now."""
        return ok(request, service.refresh(st.engine, caller.workspace_id, segment_id))

    @r.post(
        "/segments/{segment_id}/accounts/upload",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        },
    )
    def upload_segment_accounts(
        request: Request, segment_id: str, st: State, caller: CallerDep, text: CsvText
    ) -> Response:
        """Extension: add the accounts of a CSV of domains to a static segment; reports
        matched, unknown and invalid domains."""
        rows = upload.domain_rows(io.StringIO(text, newline=""))
        return ok(request, upload.add_from_csv(st.engine, caller.workspace_id, segment_id, rows))

    @r.get("/segments/{segment_id}")
    async def get_segment(
        request: Request, segment_id: str, st: State, caller: CallerDep
    ) -> Response:
        """Extension: one segment with its member count."""
        return ok(
            request, await run_read(st, service.get, st.engine, caller.workspace_id, segment_id)
        )

    @r.patch("/segments/{segment_id}", openapi_extra=body_doc(SegmentPatch))
    def patch_segment(
        request: Request, segment_id: str, st: State, caller: CallerDep, body: JsonBody
    ) -> Response:
        """Extension: rename a segment, change its status or (dynamic) its rule."""
        patch = validate(SegmentPatch, body)
        return ok(request, service.patch(st.engine, caller.workspace_id, segment_id, patch))

    @r.get("/segments/{segment_id}/accounts", openapi_extra=query_doc(LIMIT_DOC, CURSOR_DOC))
    async def segment_accounts(
        request: Request, segment_id: str, st: State, caller: CallerDep
    ) -> Response:
        """Extension: a segment's members in the E1 item shape, keyset-paginated."""
        limit, cursor = request.query_params.get("limit"), request.query_params.get("cursor")
        result = await run_read(
            st,
            service.members_page,
            st.engine,
            st.codec,
            caller.workspace_id,
            segment_id,
            limit=parse_limit(limit),
            cursor=cursor,
        )
        return ok(request, result)

    @r.post("/segments/{segment_id}/accounts", openapi_extra=body_doc(MembersChange))
    def add_segment_accounts(
        request: Request, segment_id: str, st: State, caller: CallerDep, body: JsonBody
    ) -> Response:
        """Extension: add accounts to a static segment by rtp_aid or domain (up to 1000)."""
        change = validate(MembersChange, body)
        return ok(request, service.add_accounts(st.engine, caller.workspace_id, segment_id, change))

    @r.delete("/segments/{segment_id}/accounts", openapi_extra=body_doc(MembersChange))
    def remove_segment_accounts(
        request: Request, segment_id: str, st: State, caller: CallerDep, body: JsonBody
    ) -> Response:
        """Extension: remove accounts from a static segment by rtp_aid or domain."""
        change = validate(MembersChange, body)
        return ok(
            request, service.remove_accounts(st.engine, caller.workspace_id, segment_id, change)
        )

    return r
