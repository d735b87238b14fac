"""The API key check every /api/v1 route depends on."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from intently.auth.service import Caller, authenticate

# Declared for the OpenAPI document; auto_error off so a missing key gets our own 401.
api_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False)


def current_caller(request: Request, key: Annotated[str | None, Depends(api_key_header)]) -> Caller:
    return authenticate(request.app.state.intently.engine, key)


CallerDep = Annotated[Caller, Depends(current_caller)]
