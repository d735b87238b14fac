"""Keyset pagination: signed opaque cursors, the page object, `limit` parsing (spec section 5)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import msgspec

from intently.kit.errors import BadRequest, validation_error

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# A page of accounts ends early once its items reach this many characters of JSON, and
# its cursor goes on from there: `limit` is the most a page holds, not the least. With
# large custom fields (up to 200 of 10,000 characters each) 1,000 accounts would be 2 GB.
PAGE_BYTES = 8 * 1024 * 1024


class Cursor(msgspec.Struct, array_like=True, omit_defaults=True):
    """What a walk carries from page to page. `after` is the last key of the page before."""

    list_name: str
    workspace_id: int
    after: str
    sync_us: int = 0
    filters: dict[str, Any] = {}


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Cursor)


class CursorCodec:
    """Signs cursors with the server secret, so a cursor not issued here is refused."""

    def __init__(self, secret: str):
        self._key = hashlib.sha256(("cursor:" + secret).encode()).digest()

    def encode(self, cursor: Cursor) -> str:
        payload = _enc.encode(cursor)
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + payload).rstrip(b"=").decode("ascii")

    def decode(self, token: str, list_name: str, workspace_id: int) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, payload = raw[:16], raw[16:]
            good = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
            if len(mac) != 16 or not hmac.compare_digest(mac, good):
                raise ValueError("signature")
            cursor = _dec.decode(payload)
        except (ValueError, msgspec.DecodeError, TypeError):
            raise BadRequest("Invalid cursor") from None
        # A cursor of another list or another workspace is one this list never issued.
        if cursor.list_name != list_name or cursor.workspace_id != workspace_id:
            raise BadRequest("Invalid cursor")
        return cursor


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    text = raw.strip()
    digits = text.lstrip("-")
    # isdigit alone admits "²" and other digits int() refuses.
    if not (digits.isascii() and digits.isdigit()) or not MAX_LIMIT >= int(text) >= 1:
        raise validation_error(
            "limit", "limit", "isInt", f"limit must be an integer between 1 and {MAX_LIMIT}"
        )
    return int(text)


def page(
    items: list[Any] | msgspec.Raw, next_cursor: str | None, sync_timestamp: str
) -> dict[str, Any]:
    return {
        "data": items,
        "nextCursor": next_cursor,
        "hasNextPage": next_cursor is not None,
        "syncTimestamp": sync_timestamp,
    }
