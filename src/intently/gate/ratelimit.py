"""Token buckets: one per API key and one per workspace (which all its keys draw from),
per collector write key, and per address without a key.

A bucket holds at most `burst` tokens and refills at `per_minute / 60` a second; a request
takes one token or is refused with the seconds until one is back. The collector counts
events, not requests (`gate.eventlimits`): a request of `n` events is admitted when the
bucket holds `min(n, burst)` tokens (so one batch larger than the burst can still pass a
full bucket) and then takes all `n`, so the bucket may go below zero and later requests
wait until that debt is refilled. On SQLite (one serving
process) the buckets live in memory; on PostgreSQL they live in the UNLOGGED table
`rate_buckets`, updated by one statement on the database's clock, so every process on every
host draws from the same bucket.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, select, text, tuple_
from sqlalchemy.engine import Engine

from intently.gate.tables import rate_buckets
from intently.kit.db import write_tx

ANONYMOUS_WORKSPACE = 0  # the buckets of requests without a valid key
# Buckets untouched this long are deleted (`sweep_buckets`, and the memory limiter's own
# sweep). Every default bucket refills within a minute, so an idle one is full and its
# row says nothing; a bucket set to refill slower than this starts full again.
IDLE_S = 3600.0


@dataclass(frozen=True, slots=True)
class Quota:
    per_minute: int
    burst: int

    @property
    def off(self) -> bool:
        return self.per_minute <= 0

    @property
    def rate(self) -> float:
        """Tokens per second."""
        return self.per_minute / 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the bucket is full again
    retry_after_s: int  # seconds until a token is back (0 when allowed)

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_s).encode()),
        ]
        if not self.allowed:
            out.append((b"retry-after", str(self.retry_after_s).encode()))
        return out


def need(quota: Quota, n: int) -> float:
    """The tokens a bucket must hold to admit a request of `n`."""
    return float(min(n, quota.burst))


def decide(quota: Quota, tokens: float, allowed: bool, n: int = 1) -> Decision:
    """The decision for a bucket left holding `tokens` after a request of `n` was (not)
    served (`tokens` may be negative: a debt)."""
    rate = quota.rate
    retry = (
        0 if allowed else (max(1, math.ceil((need(quota, n) - tokens) / rate)) if rate > 0 else 60)
    )
    tokens = max(0.0, min(float(quota.burst), tokens))
    reset = math.ceil((quota.burst - tokens) / rate) if rate > 0 else 0
    return Decision(allowed, quota.burst, math.floor(tokens), reset, retry)


Take = tuple[str, Quota]  # a bucket of the workspace and its quota


class Limiter(Protocol):
    def take(self, workspace_id: int, bucket: str, quota: Quota) -> Decision: ...

    def take_all(self, workspace_id: int, takes: Sequence[Take], n: int = 1) -> list[Decision]:
        """`n` tokens from each bucket in turn, stopping at the first that refuses: the
        decisions so far, the last one the refusal if any."""
        ...


class MemoryLimiter:
    """Buckets in this process: right for SQLite, where one process serves."""

    _IDLE_S = IDLE_S

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[int, str], tuple[float, float]] = {}
        self._swept = self._clock()

    def take(self, workspace_id: int, bucket: str, quota: Quota) -> Decision:
        return self.take_all(workspace_id, [(bucket, quota)])[0]

    def take_all(self, workspace_id: int, takes: Sequence[Take], n: int = 1) -> list[Decision]:
        now = self._clock()
        out = []
        with self._lock:
            for bucket, quota in takes:
                key = (workspace_id, bucket)
                tokens, at = self._buckets.get(key, (float(quota.burst), now))
                tokens = min(float(quota.burst), tokens + (now - at) * quota.rate)
                allowed = tokens >= need(quota, n)
                if allowed:
                    tokens -= n
                self._buckets[key] = (tokens, now)
                out.append(decide(quota, tokens, allowed, n))
                if not allowed:
                    break
            if now - self._swept > self._IDLE_S:
                self._sweep(now)
        return out

    def _sweep(self, now: float) -> None:
        self._swept = now
        stale = [k for k, (_, at) in self._buckets.items() if now - at > self._IDLE_S]
        for k in stale:
            del self._buckets[k]


# One statement takes `n` tokens: the conflict branch refills by the time passed and takes
# them only when `need` are there (its WHERE); no row back means refused.
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


class DatabaseLimiter:
    """Buckets in PostgreSQL, shared by every process that uses the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def take(self, workspace_id: int, bucket: str, quota: Quota) -> Decision:
        return self.take_all(workspace_id, [(bucket, quota)])[0]

    def take_all(self, workspace_id: int, takes: Sequence[Take], n: int = 1) -> list[Decision]:
        # One connection and one transaction for all of them. Every request takes its
        # key's bucket before its workspace's, so two transactions never wait on each
        # other's rows crosswise.
        out = []
        with self.engine.connect() as conn:
            for bucket, quota in takes:
                params = {
                    "ws": workspace_id,
                    "bucket": bucket,
                    "burst": float(quota.burst),
                    "rate": quota.rate,
                    "n": float(n),
                    "need": need(quota, n),
                }
                row = conn.execute(_TAKE, params).first()
                if row is not None:
                    out.append(decide(quota, float(row[0]), True, n))
                    continue
                peek = conn.execute(_PEEK, params).first()
                tokens = float(peek[0]) if peek is not None else 0.0
                out.append(decide(quota, tokens, False, n))
                break
            conn.commit()
        return out


def make_limiter(engine: Engine) -> Limiter:
    if engine.dialect.name == "sqlite":
        return MemoryLimiter()
    return DatabaseLimiter(engine)


def sweep_buckets(engine: Engine, *, now: float, idle_s: float = IDLE_S, batch: int = 5000) -> int:
    """Delete the buckets of `rate_buckets` idle for `idle_s` (seconds since the epoch,
    `now`), `batch` rows a transaction so that no sweep holds many locks; how many."""
    stale = (
        select(rate_buckets.c.workspace_id, rate_buckets.c.bucket)
        .where(rate_buckets.c.updated_at < now - idle_s)
        .limit(batch)
    )
    key = tuple_(rate_buckets.c.workspace_id, rate_buckets.c.bucket)
    removed = 0
    while True:
        with write_tx(engine) as conn:
            done = int(conn.execute(delete(rate_buckets).where(key.in_(stale))).rowcount or 0)
        removed += done
        if done < batch:
            return removed
