"""Retries shared by the vendor pullers: Retry-After, equal-jitter backoff, the retry loop.

A puller makes one try of a request in a function of its own (its auth, headers, rate
limit and error messages stay with it) and raises `Retryable` for what is worth another
try (a dropped connection, a timeout, 429, 5xx). `RetryPolicy.call` repeats that try,
waiting the server's Retry-After or an exponential backoff in between, and raises
`GaveUp` when it stops; the puller turns that into its own error and message.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

T = TypeVar("T")


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), or None when absent or bad.

    A date without a zone is taken as UTC (an HTTP date is always GMT); a date in the
    past, like a negative number, is no wait at all.
    """
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_seconds(
    attempt: int, base: float, cap: float, jitter: Callable[[], float] = random.random
) -> float:
    """The wait after failed try `attempt` (from 1): `base` doubling per try up to `cap`,
    with "equal jitter" (half the step plus `jitter()` in [0, 1) of the other half), so
    the waits still grow while clients that failed together spread out."""
    step = min(cap, base * 2 ** (attempt - 1))
    return step / 2 + jitter() * step / 2


class Retryable(Exception):
    """One try failed in a way another try may not: `problem` says how, for the last message."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem, self.retry_after = problem, retry_after


class GaveUp(Exception):
    """The retries stopped after `tries` tries; `wait` is set when the server asked for a
    longer wait than the policy allows, else the tries ran out."""

    def __init__(self, problem: str, tries: int, wait: float | None = None) -> None:
        super().__init__(problem)
        self.problem, self.tries, self.wait = problem, tries, wait


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many tries, and how long to wait between them.

    A Retry-After longer than `max_retry_after` gives up, or with `clamp_retry_after`
    waits `max_retry_after` instead; after the last try there is no wait to judge, so
    that is out of tries. Tries without a Retry-After wait `backoff_seconds`.
    """

    max_tries: int
    backoff_base: float
    backoff_cap: float
    max_retry_after: float = math.inf
    clamp_retry_after: bool = False
    jitter: Callable[[], float] = random.random

    def call(
        self,
        once: Callable[[], T],
        sleep: Callable[[float], None],
        on_retry: Callable[[int, str, float], None] | None = None,
    ) -> T:
        """`once()`, tried again after each `Retryable` up to `max_tries` tries in all.

        Anything else `once` raises ends the tries at once. `on_retry(attempt, problem,
        wait)` is told before each wait. Raises `GaveUp`.
        """
        problem = ""
        for attempt in range(1, self.max_tries + 1):
            try:
                return once()
            except Retryable as exc:
                problem, wait = exc.problem, exc.retry_after
            if attempt == self.max_tries:
                break
            if wait is None:
                wait = backoff_seconds(attempt, self.backoff_base, self.backoff_cap, self.jitter)
            elif wait > self.max_retry_after:
                if not self.clamp_retry_after:
                    raise GaveUp(problem, attempt, wait)
                wait = self.max_retry_after
            if on_retry is not None:
                on_retry(attempt, problem, wait)
            sleep(wait)
        raise GaveUp(problem, self.max_tries)
