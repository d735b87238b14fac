"""Reading JSON request bodies: content type, size limit, JSON object (spec section 3)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request

from intently.kit.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_decoder = msgspec.json.Decoder()


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or the specified 400/413/415."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got '{ctype or '(none)'}'"
        )
    limit: int = request.app.state.intently.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest("Request body must be a JSON object")
    try:
        data = _decoder.decode(raw)
    except msgspec.DecodeError:
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    return data
