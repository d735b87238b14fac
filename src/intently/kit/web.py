"""What every endpoint needs: the app's engine and codec, the caller, the request body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from starlette.responses import Response

from intently.kit.body import json_object
from intently.kit.envelope import envelope_response
from intently.kit.pagination import CursorCodec
from intently.settings import Settings

# Request body models, so the OpenAPI document can show what json_object() reads.
BODY_MODELS: dict[str, type[BaseModel]] = {}


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    engine: Engine
    codec: CursorCodec


async def state(request: Request) -> AppState:
    # async only so FastAPI calls it inline instead of on a worker thread: no I/O here.
    return request.app.state.intently


State = Annotated[AppState, Depends(state)]
JsonBody = Annotated[dict[str, Any], Depends(json_object)]


def body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """openapi_extra describing a JSON body of `model` (read by json_object, not FastAPI)."""
    BODY_MODELS[model.__name__] = model
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


def ok(request: Request, data: Any, status: int = 200) -> Response:
    return envelope_response(request.url.path, data, status)
