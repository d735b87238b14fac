"""What every endpoint needs: the app's engine and codec, the caller, the request body."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from intently.kit.body import json_object
from intently.kit.envelope import envelope_response
from intently.kit.pagination import CursorCodec
from intently.kit.slots import Slots
from intently.settings import Settings

T = TypeVar("T")

# Request body models, so the OpenAPI document can show what json_object() reads.
BODY_MODELS: dict[str, type[BaseModel]] = {}


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    engine: Engine
    codec: CursorCodec
    previews: Slots  # rule previews, dry runs and backtests running now (kit/slots.py)


async def state(request: Request) -> AppState:
    # async only so FastAPI calls it inline instead of on a worker thread: no I/O here.
    return request.app.state.intently


State = Annotated[AppState, Depends(state)]
JsonBody = Annotated[dict[str, Any], Depends(json_object)]


async def run_read(st: AppState, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a read-only service call from an async endpoint.

    On SQLite it runs inline: WAL readers never wait for a lock, and a page of reads
    costs less than the hop to a worker thread and back (which also makes the event loop
    and the worker fight over the GIL). On PostgreSQL every query is a network round
    trip, so it runs on a worker thread and the event loop stays free.
    """
    if st.engine.dialect.name == "sqlite":
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


# A preview takes a few seconds at most (settings.preview_timeout_s stops it).
PREVIEW_RETRY_AFTER_S = 2


def preview_slots(settings: Settings) -> Slots:
    """The bound on rule previews, dry runs and backtests at once (settings.preview_*)."""
    return Slots(
        "rule previews, dry runs and backtests",
        per_workspace=settings.preview_concurrency_per_workspace,
        total=settings.preview_concurrency,
        retry_after_s=PREVIEW_RETRY_AFTER_S,
    )


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


LIMIT_DOC = ("limit", "1 to 1000, default 100")
CURSOR_DOC = ("cursor", "nextCursor of the page before")


def query_doc(*params: tuple[str, str]) -> dict[str, Any]:
    """openapi_extra declaring optional string query parameters.

    List endpoints read `request.query_params` themselves: they parse and answer bad
    values in the API's own words, and FastAPI's per-parameter machinery was a measured
    tenth of a page's cost.
    """
    return {
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": text,
                "schema": {"type": "string"},
            }
            for name, text in params
        ]
    }


def ok(request: Request, data: Any, status: int = 200) -> Response:
    return envelope_response(request.url.path, data, status)
