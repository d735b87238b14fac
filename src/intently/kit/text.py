"""How a message quotes a value that was sent, and cuts a long one short.

Messages name the value they refuse so a person can find it. Two forms are in use, and
tests pin the wording of each: `quoted` (a string in single quotes, anything else as JSON
or as Python writes it) and `as_json` (JSON throughout, so "3" and 3 read differently).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

ELLIPSIS = "…"

_encode = msgspec.json.Encoder().encode


def shorten(
    text: str, limit: int | None, *, keep: int | None = None, ellipsis: str = ELLIPSIS
) -> str:
    """`text` when it has at most `limit` characters (or no limit is given); else its first
    `keep` characters (by default as many as leave room for `ellipsis`) and `ellipsis`."""
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - len(ellipsis) if keep is None else keep] + ellipsis


def as_json(
    value: Any,
    *,
    limit: int | None = None,
    keep: int | None = None,
    ellipsis: str = ELLIPSIS,
    compact: bool = False,
) -> str:
    """`value` as JSON, non-ASCII as it is, cut to `limit` characters (see `shorten`).

    `compact` writes it as msgspec does, without spaces (and NaN as null): for values
    that came in through msgspec.
    """
    if compact:
        text = _encode(value).decode("utf-8", "replace")
    else:
        text = json.dumps(value, ensure_ascii=False)
    return shorten(text, limit, keep=keep, ellipsis=ellipsis)


def quoted(
    value: Any, *, limit: int | None = None, keep: int | None = None, python: bool = False
) -> str:
    """A string in single quotes; anything else as JSON in ASCII, or as Python writes it
    (`repr`) when `python`. The text is cut to `limit` characters (see `shorten`)."""
    if isinstance(value, str):
        return f"'{shorten(value, limit, keep=keep)}'"
    return shorten(repr(value) if python else json.dumps(value), limit, keep=keep)
