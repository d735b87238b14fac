"""Token buckets that count events, for the collector: a batch of 500 events takes 500
tokens, so a flood of large batches is held to the same rate as a flood of single calls.

A bucket holds at most `burst` tokens and refills at `per_minute / 60` a second. A request
of `n` events is admitted when the bucket holds `min(n, burst)` tokens (so one batch larger
than the burst can still pass a full bucket) and then takes all `n`: the bucket may go
below zero, and later requests wait until that debt is refilled. On SQLite (one serving
process) the buckets live in memory; on PostgreSQL they share the gate's UNLOGGED table
`rate_buckets` (under bucket names of their own), updated by one statement on the
database's clock, so every process on every host draws from the same bucket.

The gate's buckets (`gate/ratelimit.py`) take one token per request; these take `n`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Engine


@dataclass(frozen=True, slots=True)
class Taken:
    """What a bucket said to a request of `n` events."""

    allowed: bool
    tokens: float  # left after the request (may be negative: debt)
    retry_after_s: int  # seconds until the request would be admitted (0 when it was)


def _retry_after(need: float, tokens: float, rate: float) -> int:
    if rate <= 0:
        return 60
    return max(1, math.ceil((need - tokens) / rate))


class EventBuckets(Protocol):
    def take(self, ws: int, bucket: str, per_minute: int, burst: int, n: int) -> Taken: ...


class MemoryBuckets:
    """Buckets in this process: right for SQLite, where one process serves."""

    _IDLE_S = 3600.0  # buckets untouched this long are full again and may be forgotten

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[int, str], tuple[float, float]] = {}
        self._swept = clock()

    def take(self, ws: int, bucket: str, per_minute: int, burst: int, n: int) -> Taken:
        now = self._clock()
        rate = per_minute / 60.0
        need = float(min(n, burst))
        with self._lock:
            tokens, at = self._buckets.get((ws, bucket), (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * rate)
            allowed = tokens >= need
            if allowed:
                tokens -= n
            self._buckets[(ws, bucket)] = (tokens, now)
            if now - self._swept > self._IDLE_S:
                self._swept = now
                for k in [k for k, (_, t) in self._buckets.items() if now - t > self._IDLE_S]:
                    del self._buckets[k]
        return Taken(allowed, tokens, 0 if allowed else _retry_after(need, tokens, rate))


# The conflict branch refills by the time passed and takes n only when min(n, burst) are
# there (its WHERE); no row back means refused, and a second statement reads the level.
_TAKE = text(
    """
    INSERT INTO rate_buckets (workspace_id, bucket, tokens, updated_at)
    VALUES (:ws, :bucket, :burst - :n, extract(epoch FROM clock_timestamp()))
    ON CONFLICT (workspace_id, bucket) DO UPDATE SET
        tokens = least(:burst, rate_buckets.tokens
                 + (excluded.updated_at - rate_buckets.updated_at) * :rate) - :n,
        updated_at = excluded.updated_at
    WHERE least(:burst, rate_buckets.tokens
          + (excluded.updated_at - rate_buckets.updated_at) * :rate) >= :need
    RETURNING tokens
    """
)
_PEEK = text(
    """
    SELECT least(:burst, tokens + (extract(epoch FROM clock_timestamp()) - updated_at) * :rate)
    FROM rate_buckets WHERE workspace_id = :ws AND bucket = :bucket
    """
)


class DatabaseBuckets:
    """Buckets in PostgreSQL, shared by every process that uses the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def take(self, ws: int, bucket: str, per_minute: int, burst: int, n: int) -> Taken:
        rate = per_minute / 60.0
        need = float(min(n, burst))
        params = {
            "ws": ws,
            "bucket": bucket[:80],
            "burst": float(burst),
            "rate": rate,
            "n": float(n),
            "need": need,
        }
        with self.engine.connect() as conn:
            row = conn.execute(_TAKE, params).first()
            if row is not None:
                conn.commit()
                return Taken(True, float(row[0]), 0)
            peek = conn.execute(_PEEK, params).first()
            conn.commit()
        tokens = float(peek[0]) if peek is not None else 0.0
        return Taken(False, tokens, _retry_after(need, tokens, rate))


def make_buckets(engine: Engine) -> EventBuckets:
    if engine.dialect.name == "sqlite":
        return MemoryBuckets()
    return DatabaseBuckets(engine)


@dataclass(frozen=True, slots=True)
class Limit:
    per_minute: int  # 0: off
    burst: int


@dataclass(frozen=True, slots=True)
class Refusal:
    what: str  # "this write key", "this address", "requests that failed from this address"
    limit: Limit
    taken: Taken


@dataclass(frozen=True, slots=True)
class Admission:
    key: Taken | None  # the write key's bucket after the request (None: limit off)
    refused: Refusal | None


class CollectorLimits:
    """The collector's three buckets: events per write key (its workspace), events per
    client address within a workspace, and failed requests (bad body, bad key) per address.

    An address whose failures ran out is remembered in this process until its bucket
    refills, so its next requests are refused before their bodies are read or parsed.
    """

    _MAX_SHUNNED = 10_000

    def __init__(
        self,
        buckets: EventBuckets,
        *,
        key: Limit,
        address: Limit,
        failures: Limit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buckets, self.key, self.address, self.failures = buckets, key, address, failures
        self._clock = clock
        self._shunned: dict[str, float] = {}

    def events(self, ws: int, peer: str, n: int) -> Admission:
        """Take `n` events from the write key's bucket, then from the address's."""
        key_taken: Taken | None = None
        for what, limit, bucket in (
            ("this write key", self.key, "collector-events"),
            ("this address", self.address, "collector-addr:" + peer),
        ):
            if limit.per_minute <= 0:
                continue
            taken = self.buckets.take(ws, bucket, limit.per_minute, limit.burst, n)
            if key_taken is None and bucket == "collector-events":
                key_taken = taken
            if not taken.allowed:
                return Admission(key_taken, Refusal(what, limit, taken))
        return Admission(key_taken, None)

    def shunned(self, peer: str) -> int:
        """Seconds this address must still wait after running out of failures (0: none)."""
        until = self._shunned.get(peer)
        if until is None:
            return 0
        left = until - self._clock()
        if left <= 0:
            self._shunned.pop(peer, None)
            return 0
        return max(1, math.ceil(left))

    def failed(self, peer: str) -> Refusal | None:
        """Count a failed request of `peer`; the refusal when it has failed too often."""
        if self.failures.per_minute <= 0:
            return None
        taken = self.buckets.take(
            0, "collector-bad:" + peer, self.failures.per_minute, self.failures.burst, 1
        )
        if taken.allowed:
            return None
        if len(self._shunned) >= self._MAX_SHUNNED:
            self._shunned.clear()
        self._shunned[peer] = self._clock() + taken.retry_after_s
        return Refusal("requests that failed from this address", self.failures, taken)
