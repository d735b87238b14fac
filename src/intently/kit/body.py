"""Reading request bodies: content type, size limit, JSON object (spec section 3), CSV text."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request

from intently.kit.errors import (
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    validation_error,
)

_decoder = msgspec.json.Decoder()


async def _read_limited(request: Request) -> bytes:
    limit: int = request.app.state.intently.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def csv_text(request: Request) -> str:
    """The request body as CSV text (text/csv or text/plain, UTF-8), or 400/413/415."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media not in ("text/csv", "text/plain"):
        raise UnsupportedMediaType(f"Content-Type must be text/csv, got '{ctype or '(none)'}'")
    raw = await _read_limited(request)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("Request body is not UTF-8 text") from None
    if "\x00" in text:
        raise BadRequest("Request body must not contain NUL characters")
    if not text.strip():
        raise BadRequest("Request body is empty: expected a CSV of domains")
    return text


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
    raw = await _read_limited(request)
    if not raw.strip():
        raise BadRequest("Request body must be a JSON object")
    try:
        data = _decoder.decode(raw)
    except msgspec.DecodeError:
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    if b"\\u0000" in raw:  # cheap test first; PostgreSQL text cannot hold NUL
        where = _nul_path(data, [])
        if where is not None:
            prop = next((p for p in reversed(where) if isinstance(p, str)), "body")
            path = ".".join(str(p) for p in where)
            raise validation_error(
                prop, path, "noNulCharacters", f"{prop} must not contain NUL characters"
            )
    return data


def _nul_path(value: Any, path: list[str | int]) -> list[str | int] | None:
    """Where the first string (or key) holding a NUL character is, if any."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in k:
                return [*path, k]
            found = _nul_path(v, [*path, k])
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _nul_path(v, [*path, i])
            if found is not None:
                return found
    return None
