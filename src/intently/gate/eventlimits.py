"""Rate limits that count events, for the collector: a batch of 500 events takes 500
tokens, so a flood of large batches is held to the same rate as a flood of single calls.

The buckets are the gate's (`gate.ratelimit`: in memory on SQLite, the UNLOGGED table
`rate_buckets` on PostgreSQL, under bucket names of their own), taking `n` tokens a
request: admitted when the bucket holds `min(n, burst)`, then all `n` are taken.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from intently.gate.ratelimit import Decision, Limiter, Quota


@dataclass(frozen=True, slots=True)
class Refusal:
    what: str  # "this write key", "this address", "requests that failed from this address"
    limit: Quota
    decision: Decision


@dataclass(frozen=True, slots=True)
class Admission:
    key: Decision | None  # the write key's bucket after the request (None: limit off)
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
        buckets: Limiter,
        *,
        key: Quota,
        address: Quota,
        failures: Quota,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buckets, self.key, self.address, self.failures = buckets, key, address, failures
        self._clock = clock
        self._shunned: dict[str, float] = {}

    def events(self, ws: int, peer: str, n: int) -> Admission:
        """Take `n` events from the write key's bucket, then from the address's: in one
        call, so one transaction on PostgreSQL for every collector request."""
        buckets = [
            (what, limit, bucket)
            for what, limit, bucket in (
                ("this write key", self.key, "collector-events"),
                ("this address", self.address, "collector-addr:" + peer),
            )
            if not limit.off
        ]
        if not buckets:
            return Admission(None, None)
        taken = self.buckets.take_all(ws, [(bucket, limit) for _, limit, bucket in buckets], n)
        key_taken = None if self.key.off else taken[0]
        last = taken[-1]
        if last.allowed:
            return Admission(key_taken, None)
        what, limit, _ = buckets[len(taken) - 1]
        return Admission(key_taken, Refusal(what, limit, last))

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
        if self.failures.off:
            return None
        taken = self.buckets.take(0, "collector-bad:" + peer, self.failures)
        if taken.allowed:
            return None
        if len(self._shunned) >= self._MAX_SHUNNED:
            self._shunned.clear()
        self._shunned[peer] = self._clock() + taken.retry_after_s
        return Refusal("requests that failed from this address", self.failures, taken)
