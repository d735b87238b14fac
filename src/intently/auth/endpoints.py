"""The API key check every /api/v1 route depends on."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from intently.auth.service import Caller
from intently.gate.middleware import address
from intently.kit.errors import BadRequest
from intently.kit.web import run_read, state

# The OpenAPI document declares the key once (app._openapi adds it to every /api/v1
# operation); the dependency reads the header itself, which is cheaper per request than
# FastAPI's security-scheme dependency.
API_KEY_SCHEME: dict[str, Any] = {"type": "apiKey", "in": "header", "name": "X-Api-Key"}


async def current_caller(request: Request) -> Caller:
    """The caller of every /api/v1 route: its key checked, a token taken from its bucket."""
    # No stored text can hold NUL (PostgreSQL refuses it): say so instead of failing.
    if b"%00" in request.scope["query_string"]:
        raise BadRequest("Query parameters must not contain NUL characters (%00)")
    if "\x00" in request.scope["path"]:
        raise BadRequest("The path must not contain NUL characters (%00)")
    st = await state(request)
    gate = request.app.state.gate
    return await run_read(
        st,
        gate.admit,
        request.scope.setdefault("state", {}),
        request.headers.get("x-api-key"),
        address(request.scope),
    )


CallerDep = Annotated[Caller, Depends(current_caller)]
