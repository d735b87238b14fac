"""Identifiers: 24 lowercase hex characters, time-ordered like a MongoDB ObjectId.

Layout: 48 bits of milliseconds since the epoch, then 48 bits that start random each
millisecond and count up within it, so ids made by one process sort in creation order
and ids made by several processes sort by time to the millisecond.
"""

from __future__ import annotations

import os
import re
import threading
import time

from intently.kit.errors import BadRequest

_ID_RE = re.compile(r"[0-9a-f]{24}")
_lock = threading.Lock()
_last_ms = 0
_last_tail = 0
_TAIL_MAX = (1 << 48) - 1


def new_id() -> str:
    """A new time-ordered id."""
    global _last_ms, _last_tail
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            tail = _last_tail + 1
            if tail > _TAIL_MAX:  # 2^48 ids in one millisecond: borrow the next one
                ms += 1
                tail = int.from_bytes(os.urandom(5), "big")
        else:
            # Start low in the 48-bit space so the counter has room to grow.
            tail = int.from_bytes(os.urandom(5), "big")
        _last_ms, _last_tail = ms, tail
    return f"{ms:012x}{tail:012x}"


def is_id(value: str) -> bool:
    return bool(_ID_RE.fullmatch(value))


def check_id(value: str, name: str) -> None:
    """400 "Invalid <name> format" unless `value` is an id (Recotap's wording for a bad id)."""
    if not is_id(value):
        raise BadRequest(f"Invalid {name} format")


def check_aid(aid: str) -> None:
    """An account id (`rtp_aid`) as a path or body value: 400 unless well-formed."""
    check_id(aid, "rtp_aid")
