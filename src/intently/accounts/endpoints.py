from __future__ import annotations

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response

from intently.accounts import service
from intently.accounts.schemas import AccountsPush, CustomFieldsUpdate, ExternalIdsPatch
from intently.auth.endpoints import CallerDep
from intently.kit.domains import InvalidDomain, normalise_domain
from intently.kit.errors import BadRequest, ValidationFailed, validation_error
from intently.kit.pagination import parse_limit
from intently.kit.timefmt import parse_iso8601
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

MAX_DOMAINS = 100


def parse_domains(raw: str | None) -> list[str] | None:
    """`["acme.com","https://www.globex.com/x"]` or `acme.com,globex.com`, normalised."""
    if raw is None:
        return None
    text = raw.strip()
    values: object
    if text.startswith("["):
        try:
            values = msgspec.json.decode(text)
        except msgspec.DecodeError:
            raise validation_error(
                "domains",
                "domains",
                "isArray",
                "domains must be a JSON array of strings or a comma-separated list",
            ) from None
    else:
        values = [v for v in text.split(",") if v.strip()]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise validation_error(
            "domains", "domains", "isArray", "each value in domains must be a string"
        )
    if not values:
        raise validation_error(
            "domains", "domains", "arrayMinSize", "domains must contain at least 1 elements"
        )
    if len(values) > MAX_DOMAINS:
        raise validation_error(
            "domains",
            "domains",
            "arrayMaxSize",
            f"domains must contain no more than {MAX_DOMAINS} elements",
        )
    out: list[str] = []
    for i, v in enumerate(values):
        try:
            out.append(normalise_domain(v))
        except InvalidDomain:
            raise ValidationFailed(
                [
                    {
                        "property": "domains",
                        "path": f"domains.{i}",
                        "constraints": {
                            "isDomain": f"each value in domains must be a valid domain name ('{v}')"
                        },
                    }
                ]
            ) from None
    return list(dict.fromkeys(out))


def parse_last_sync(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return parse_iso8601(raw)
    except ValueError:
        raise BadRequest("lastSync must be a valid ISO 8601 date string") from None


def router(*, crm: bool) -> APIRouter:
    r = APIRouter(tags=["accounts"])

    @r.get(
        "/accounts",
        openapi_extra=query_doc(
            LIMIT_DOC,
            CURSOR_DOC,
            ("lastSync", "ISO 8601; only accounts changed after it"),
            ("domains", "JSON array or comma list of up to 100 domains"),
        ),
    )
    async def list_accounts(request: Request, st: State, caller: CallerDep) -> Response:
        """E1: accounts in rtp_aid order, keyset-paginated, optionally changed since lastSync."""
        q = request.query_params
        n = parse_limit(q.get("limit"))
        cursor, lastSync, domains = q.get("cursor"), q.get("lastSync"), q.get("domains")
        result = await run_read(
            st,
            service.list_accounts,
            st.engine,
            st.codec,
            caller.workspace_id,
            limit=n,
            cursor=cursor,
            last_sync_us=parse_last_sync(lastSync) if cursor is None else None,
            domains=parse_domains(domains) if cursor is None else None,
        )
        return ok(request, result)

    @r.post("/accounts", openapi_extra=body_doc(AccountsPush))
    def push_accounts(request: Request, st: State, caller: CallerDep, body: JsonBody) -> Response:
        """E2: create up to 100 accounts (or update them with upsert)."""
        results = service.push_accounts(
            st.engine,
            caller.workspace_id,
            validate(AccountsPush, body, st.settings, batch="accounts"),
        )
        return ok(request, {"results": results})

    @r.get("/accounts/missing-external-ids", openapi_extra=query_doc(LIMIT_DOC))
    async def missing_external_ids(request: Request, st: State, caller: CallerDep) -> Response:
        """E4: accounts without an externalId, oldest first."""
        return ok(
            request,
            await run_read(
                st,
                service.missing_external_ids,
                st.engine,
                caller.workspace_id,
                parse_limit(request.query_params.get("limit")),
            ),
        )

    @r.patch("/accounts/external-ids", openapi_extra=body_doc(ExternalIdsPatch))
    def map_external_ids(
        request: Request, st: State, caller: CallerDep, body: JsonBody
    ) -> Response:
        """E5: set externalIds by domain."""
        patch = validate(ExternalIdsPatch, body, st.settings, batch="mappings")
        raw = [m["domain"] for m in body["mappings"]]
        return ok(request, service.map_external_ids(st.engine, caller.workspace_id, patch, raw))

    ident = "externalId" if crm else "rtp_aid"

    @r.put("/accounts/{ident}", openapi_extra=body_doc(CustomFieldsUpdate))
    def update_account(
        request: Request, ident: str, st: State, caller: CallerDep, body: JsonBody
    ) -> Response:
        """E3: merge custom field values (by rtp_aid; by externalId under /api/v1/crm/)."""
        extra = sorted(k for k in body if k != "customFields")
        if extra:
            raise BadRequest("Only customFields can be updated")
        update = validate(CustomFieldsUpdate, body, st.settings)
        service.update_custom_fields(
            st.engine, caller.workspace_id, ident, update.customFields, by_external_id=crm
        )
        return ok(request, {"message": "Account updated successfully"})

    update_account.__doc__ = f"E3: merge custom field values of the account named by {ident}."

    @r.get("/accounts/{rtp_aid}")
    async def get_account(request: Request, rtp_aid: str, st: State, caller: CallerDep) -> Response:
        """One account, in the E1 item shape."""
        return ok(
            request,
            await run_read(st, service.get_account, st.engine, caller.workspace_id, rtp_aid),
        )

    return r
