"""The pullers' shared retry pieces: Retry-After parsing, backoff, and the retry loop."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from intently.ingest.http import (
    GaveUp,
    Retryable,
    RetryPolicy,
    backoff_seconds,
    retry_after_seconds,
)

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def http_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)  # "Thu, 26 Nov 2026 12:00:30 GMT"


# ---- retry_after_seconds -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), ("0", 0.0), (" 12 ", 12.0), ("1.5", 1.5), ("-3", 0.0), ("3600", 3600.0)],
)
def test_delta_seconds(value: str, seconds: float) -> None:
    assert retry_after_seconds(value, NOW) == seconds


def test_an_http_date_in_the_future_is_the_seconds_until_it() -> None:
    assert retry_after_seconds(http_date(NOW + timedelta(seconds=30)), NOW) == 30.0
    assert retry_after_seconds(http_date(NOW + timedelta(hours=2)), NOW) == 7200.0


def test_an_http_date_in_the_past_or_now_is_no_wait() -> None:
    assert retry_after_seconds(http_date(NOW - timedelta(minutes=5)), NOW) == 0.0
    assert retry_after_seconds(http_date(NOW), NOW) == 0.0


def test_an_http_date_in_another_zone_or_none_is_read_as_such() -> None:
    assert retry_after_seconds("Thu, 26 Nov 2026 13:00:10 +0100", NOW) == 10.0
    assert retry_after_seconds("Thu, 26 Nov 2026 12:00:10 -0000", NOW) == 10.0  # no zone: UTC
    assert retry_after_seconds("Thu, 26 Nov 2026 12:00:10", NOW) == 10.0


def test_without_now_a_date_is_measured_from_the_real_clock() -> None:
    soon = retry_after_seconds(http_date(datetime.now(UTC) + timedelta(seconds=100)))
    assert soon is not None and 95.0 <= soon <= 100.0
    assert retry_after_seconds(http_date(datetime.now(UTC) - timedelta(days=1))) == 0.0


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "12 s", "Thu, 99 Nov 2026", "1e"])
def test_absent_or_garbage_is_none(value: str | None) -> None:
    assert retry_after_seconds(value, NOW) is None


# ---- backoff_seconds ---------------------------------------------------------------------


def test_backoff_is_half_the_step_plus_the_jittered_other_half() -> None:
    assert backoff_seconds(1, 1.0, 60.0, lambda: 0.0) == 0.5
    assert backoff_seconds(1, 1.0, 60.0, lambda: 0.5) == 0.75
    assert backoff_seconds(1, 1.0, 60.0, lambda: 0.999) == pytest.approx(0.9995)
    assert backoff_seconds(3, 2.0, 60.0, lambda: 0.25) == 5.0  # step 8: 4 + 0.25 * 4


def test_backoff_doubles_each_attempt() -> None:
    steps = [backoff_seconds(a, 1.0, 1000.0, lambda: 1.0) for a in range(1, 8)]
    assert steps == [1, 2, 4, 8, 16, 32, 64]
    mid = [backoff_seconds(a, 0.5, 1000.0, lambda: 0.5) for a in range(1, 5)]
    assert mid == [0.375, 0.75, 1.5, 3.0]


def test_backoff_stops_growing_at_the_cap() -> None:
    assert [backoff_seconds(a, 1.0, 30.0, lambda: 1.0) for a in (5, 6, 7, 20)] == [16, 30, 30, 30]
    assert backoff_seconds(50, 1.0, 30.0, lambda: 0.0) == 15.0  # still at least half the cap
    assert backoff_seconds(4, 0.0, 30.0, lambda: 0.7) == 0.0


def test_backoff_with_real_randomness_stays_within_half_and_whole_step() -> None:
    rng = random.Random(3)
    for attempt in range(1, 10):
        step = min(60.0, 2.0 ** (attempt - 1))
        waits = [backoff_seconds(attempt, 1.0, 60.0, rng.random) for _ in range(200)]
        assert all(step / 2 <= w <= step for w in waits)
        assert len(set(waits)) > 100  # jittered, not one fixed wait


def test_backoff_jitters_with_the_random_module_by_default() -> None:
    random.seed(11)
    wait = backoff_seconds(3, 1.0, 60.0)
    random.seed(11)
    assert wait == 2.0 + random.random() * 2.0


# ---- RetryPolicy -------------------------------------------------------------------------


def failing(*outcomes: Exception | str) -> Callable[[], str]:
    """A try that raises each exception in turn, then answers the first string."""
    queue = list(outcomes)

    def once() -> str:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return once


def test_retries_until_a_try_succeeds_waiting_retry_after_or_backoff() -> None:
    sleeps: list[float] = []
    told: list[tuple[int, str, float]] = []
    policy = RetryPolicy(5, 1.0, 60.0, jitter=lambda: 0.5)
    once = failing(Retryable("HTTP 503"), Retryable("HTTP 429", 7.0), Retryable("drop"), "ok")
    assert policy.call(once, sleeps.append, lambda *a: told.append(a)) == "ok"
    assert sleeps == [0.75, 7.0, 3.0]  # backoff step 1, the Retry-After, backoff step 4
    assert told == [(1, "HTTP 503", 0.75), (2, "HTTP 429", 7.0), (3, "drop", 3.0)]


def test_gives_up_after_max_tries_with_the_last_problem() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(3, 1.0, 60.0, jitter=lambda: 0.0)
    with pytest.raises(GaveUp) as info:
        policy.call(failing(*[Retryable(f"HTTP 50{i}") for i in range(3)]), sleeps.append)
    assert (info.value.problem, info.value.tries, info.value.wait) == ("HTTP 502", 3, None)
    assert sleeps == [0.5, 1.0]  # no wait after the last try


def test_other_errors_end_the_tries_at_once() -> None:
    sleeps: list[float] = []
    with pytest.raises(KeyError):
        RetryPolicy(5, 1.0, 60.0).call(failing(Retryable("x"), KeyError("y")), sleeps.append)
    assert len(sleeps) == 1


def test_a_retry_after_beyond_the_limit_gives_up_or_is_clamped() -> None:
    sleeps: list[float] = []
    strict = RetryPolicy(5, 1.0, 60.0, max_retry_after=300.0)
    with pytest.raises(GaveUp) as info:
        strict.call(failing(Retryable("HTTP 429", 301.0)), sleeps.append)
    assert (info.value.problem, info.value.tries, info.value.wait) == ("HTTP 429", 1, 301.0)
    assert sleeps == []
    assert strict.call(failing(Retryable("HTTP 429", 300.0), "ok"), sleeps.append) == "ok"
    assert sleeps == [300.0]

    clamped = RetryPolicy(5, 1.0, 60.0, max_retry_after=300.0, clamp_retry_after=True)
    assert clamped.call(failing(Retryable("HTTP 429", 9999.0), "ok"), sleeps.append) == "ok"
    assert sleeps == [300.0, 300.0]


def test_a_long_retry_after_on_the_last_try_is_out_of_tries() -> None:
    policy = RetryPolicy(2, 1.0, 60.0, max_retry_after=300.0, jitter=lambda: 0.0)
    with pytest.raises(GaveUp) as info:
        policy.call(failing(Retryable("a"), Retryable("b", 9999.0)), lambda s: None)
    assert (info.value.problem, info.value.tries, info.value.wait) == ("b", 2, None)
