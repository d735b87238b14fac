"""Instants: stored as integer microseconds since the epoch (UTC), shown as ISO 8601 with Z."""

from __future__ import annotations

import time
from datetime import UTC, datetime

# Time units: every instant is integer microseconds; a day number is instant // US_PER_DAY.
US_PER_SECOND = 1_000_000
US_PER_MINUTE = 60 * US_PER_SECOND
US_PER_HOUR = 60 * US_PER_MINUTE
US_PER_DAY = 24 * US_PER_HOUR

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    return time.time_ns() // 1000


def parse_iso8601(value: str) -> int:
    """ISO 8601 date or date-time to microseconds; no offset means UTC. Raises ValueError."""
    text = value.strip()
    if not text or len(text) < 4 or not text[:4].isdigit():
        raise ValueError(value)
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def format_ms(us: int) -> str:
    """`2026-04-30T10:00:00.000Z` (milliseconds, as the envelope uses)."""
    dt = datetime.fromtimestamp(us // 1_000_000, tz=UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{(us % 1_000_000) // 1000:03d}Z"


def format_us(us: int) -> str:
    """`2026-04-30T10:00:00.123456Z`: full precision, for sync timestamps."""
    dt = datetime.fromtimestamp(us // 1_000_000, tz=UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{us % 1_000_000:06d}Z"
