"""The response envelope every /api/v1 answer wears (spec section 4)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec
from starlette.responses import Response

from intently.kit.timefmt import format_ms, now_us

_encoder = msgspec.json.Encoder()


# The reason phrases the API promises; Python's table still says "Request Entity Too Large".
_PHRASES = {413: "Payload Too Large", 422: "Unprocessable Entity"}


def reason(status: int) -> str:
    if status in _PHRASES:
        return _PHRASES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def envelope_response(
    path: str,
    data: Any,
    status: int = 200,
    *,
    custom_message: str | None = None,
    error: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"statusCode": status, "timestamp": format_ms(now_us()), "path": path}
    if error:
        body["message"] = reason(status)
        if custom_message is not None:
            body["customMessage"] = custom_message
    body["data"] = data
    return Response(
        content=_encoder.encode(body),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )
