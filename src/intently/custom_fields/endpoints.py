from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from intently.auth.endpoints import CallerDep
from intently.custom_fields import service
from intently.custom_fields.schemas import CustomFieldIn
from intently.kit.validation import validate
from intently.kit.web import JsonBody, State, body_doc, ok, run_read


def router() -> APIRouter:
    r = APIRouter(tags=["custom fields"])

    @r.post("/accounts/custom-field", openapi_extra=body_doc(CustomFieldIn), status_code=201)
    def create_custom_field(
        request: Request, st: State, caller: CallerDep, body: JsonBody
    ) -> Response:
        """E8: create (or reactivate) an account custom field."""
        field = service.create(st.engine, caller.workspace_id, validate(CustomFieldIn, body))
        return ok(request, [field], 201)

    @r.get("/accounts/custom-fields")
    async def list_custom_fields(request: Request, st: State, caller: CallerDep) -> Response:
        """E9: the workspace's active account custom fields."""
        return ok(request, await run_read(st, service.list_active, st.engine, caller.workspace_id))

    # `:path`: a key keeps its label's characters, `/` included, and a client may send the
    # slash as it is or encoded (the server decodes %2F before routing).
    @r.delete("/accounts/custom-fields/{key:path}")
    def delete_custom_field(request: Request, key: str, st: State, caller: CallerDep) -> Response:
        """Deactivate a custom field; its values are kept, hidden, until it is re-created."""
        return ok(request, service.deactivate(st.engine, caller.workspace_id, key))

    return r
