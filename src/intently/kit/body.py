"""Reading request bodies: content type, size limit, JSON object (spec section 3), CSV text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import msgspec
from starlette.requests import Request

from intently.kit.errors import (
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    validation_error,
)

_decoder = msgspec.json.Decoder()

Loc = list[str | int]


async def read_limited(request: Request) -> bytes:
    """The whole body, or 413 once it passes INTENTLY_MAX_BODY_BYTES."""
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
    raw = await read_limited(request)
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
    """The request body as a JSON object within the depth and string limits, or 400/413/415."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got '{ctype or '(none)'}'"
        )
    raw = await read_limited(request)
    settings = request.app.state.intently.settings
    return decode_object(raw, settings.max_json_depth, settings.max_string_length)


def decode_object(raw: bytes, max_depth: int, max_length: int) -> dict[str, Any]:
    """`raw` as a JSON object, or BadRequest / ValidationFailed naming where it breaks a limit.

    `max_depth` counts nested objects and arrays, the top-level object being level 1;
    `max_length` applies to every string, object keys included, in characters.
    """
    if not raw.strip():
        raise BadRequest("Request body must be a JSON object")
    try:
        data = _decoder.decode(raw)
    except msgspec.DecodeError:
        raise BadRequest("Request body is not valid JSON") from None
    except RecursionError:
        # The decoder stops at Python's recursion limit (about a thousand levels): find
        # where the text itself goes deeper than allowed, without decoding it.
        raise _too_deep_text(raw, max_depth) from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    # Cheap tests on the raw bytes first: a body with no more brackets than the depth limit
    # cannot be that deep, a string needs more bytes than it has characters (escapes only
    # add bytes), and NUL can only arrive escaped (PostgreSQL text cannot hold it).
    depth = max_depth if raw.count(b"[") + raw.count(b"{") > max_depth else _UNLIMITED
    length = max_length if len(raw) > max_length else _UNLIMITED
    nul = b"\\u0000" in raw
    if (depth < _UNLIMITED or length < _UNLIMITED or nul) and not _fits(data, depth, length, nul):
        problem = _first_problem(data, depth, length, nul)
        if problem is not None:
            raise _describe(*problem, max_depth=max_depth, max_length=max_length)
    return data


_UNLIMITED = 1 << 62


def _fits(root: dict[str, Any], max_depth: int, max_length: int, nul: bool) -> bool:
    """Whether every container is within `max_depth` and every string within the limits.

    The hot path (every push of a hundred accounts walks its body): no paths, a plain
    stack instead of recursion, and type identity instead of isinstance.
    """
    stack: list[tuple[Any, int]] = [(root, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        value, level = pop()
        if type(value) is dict:
            for k in value:
                if len(k) > max_length or (nul and "\x00" in k):
                    return False
            items = value.values()
        else:
            items = value
        for v in items:
            t = type(v)
            if t is str:
                if len(v) > max_length or (nul and "\x00" in v):
                    return False
            elif t is dict or t is list:
                if level == max_depth:
                    return False
                push((v, level + 1))
    return True


def _entries(container: Any) -> Iterator[tuple[Any, Any]]:
    return iter(container.items()) if type(container) is dict else enumerate(container)


def _first_problem(
    root: dict[str, Any], max_depth: int, max_length: int, nul: bool
) -> tuple[str, Loc] | None:
    """The first problem in document order, as (kind, location), once _fits found one."""
    stack: list[tuple[Iterator[tuple[Any, Any]], Loc]] = [(_entries(root), [])]
    while stack:
        entries, loc = stack[-1]
        for k, v in entries:
            if type(k) is str:
                if nul and "\x00" in k:
                    return "nul", [*loc, k]
                if len(k) > max_length:
                    return "key", loc
            t = type(v)
            if t is str:
                if nul and "\x00" in v:
                    return "nul", [*loc, k]
                if len(v) > max_length:
                    return "length", [*loc, k]
            elif t is dict or t is list:
                if len(stack) == max_depth:
                    return "depth", [*loc, k]
                stack.append((_entries(v), [*loc, k]))
                break
        else:
            stack.pop()
    return None


def _describe(kind: str, loc: Loc, *, max_depth: int, max_length: int) -> ValidationFailed:
    names = [p for p in loc if isinstance(p, str)]
    if kind == "nul":
        prop = names[-1] if names else "body"
        path = ".".join(str(p) for p in loc)
        return validation_error(
            prop, path, "noNulCharacters", f"{prop} must not contain NUL characters"
        )
    if kind == "depth":
        prop = names[-1] if names else "body"
        path = ".".join(str(p) for p in loc) or prop
        return validation_error(
            prop, path, "maxDepth", f"{prop} is nested deeper than the limit of {max_depth} levels"
        )
    # A string inside an array speaks of the array, as class-validator does: "each value in".
    each = kind == "key" or (bool(loc) and isinstance(loc[-1], int))
    where = loc[:-1] if kind == "length" and each else loc
    names = [p for p in where if isinstance(p, str)]
    prop = names[-1] if names else "body"
    path = ".".join(str(p) for p in where) or prop
    text = f"{prop} must be shorter than or equal to {max_length} characters"
    if kind == "key":
        text = "each key in " + text
    elif each:
        text = "each value in " + text
    return validation_error(prop, path, "maxLength", text)


# A string, or one structural character: enough to follow nesting without decoding.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]')
_QUOTE, _OPEN_ARRAY, _OPEN_OBJECT, _CLOSE_ARRAY, _CLOSE_OBJECT, _COMMA = b'"[{]},'


def _too_deep_text(raw: bytes, max_depth: int) -> ValidationFailed:
    """The depth error for a body too deep to decode, located by scanning its text."""
    loc: Loc = []  # per open container: its current key or index
    objects: list[bool] = []
    last_string = b'""'
    for m in _TOKEN.finditer(raw):
        token = m.group()
        c = token[0]
        if c == _QUOTE:
            last_string = token
        elif c in (_OPEN_ARRAY, _OPEN_OBJECT):
            if len(objects) == max_depth:
                return _describe("depth", loc, max_depth=max_depth, max_length=0)
            objects.append(c == _OPEN_OBJECT)
            loc.append("" if c == _OPEN_OBJECT else 0)
        elif c in (_CLOSE_ARRAY, _CLOSE_OBJECT):
            if objects:
                objects.pop()
                loc.pop()
        elif c == _COMMA:
            if objects and not objects[-1]:
                loc[-1] = int(loc[-1]) + 1
        elif objects and objects[-1]:  # ':' after a key
            loc[-1] = _key(last_string)
    # Within the limit, yet deeper than the decoder can go (a limit set near its maximum).
    return validation_error("body", "body", "maxDepth", "body is nested too deeply to be read")


def _key(token: bytes) -> str:
    try:
        key = msgspec.json.decode(token)
    except msgspec.DecodeError:
        return token[1:-1].decode("utf-8", "replace")
    return key if isinstance(key, str) else str(key)
