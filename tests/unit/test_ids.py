"""intently.kit.ids: 24 lowercase hex characters, time-ordered, strictly increasing."""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable

import pytest

from intently.kit import ids
from intently.kit.ids import is_id, new_id


def _frozen_clock(monkeypatch: pytest.MonkeyPatch, ns: Callable[[], int]) -> None:
    """Make intently.kit.ids read `ns` as the time, without touching the real time module."""
    monkeypatch.setattr(ids, "time", types.SimpleNamespace(time_ns=ns))
    # Restore the generator's memory afterwards, so later ids in this process stay ordered.
    monkeypatch.setattr(ids, "_last_ms", ids._last_ms)
    monkeypatch.setattr(ids, "_last_tail", ids._last_tail)


def test_format() -> None:
    for value in [new_id() for _ in range(200)]:
        assert len(value) == 24
        assert value == value.lower()
        assert all(c in "0123456789abcdef" for c in value)
        assert is_id(value)


def test_strictly_increasing_in_a_tight_loop() -> None:
    values = [new_id() for _ in range(20_000)]
    assert values == sorted(values)
    assert len(set(values)) == len(values)


def test_strictly_increasing_within_one_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = (time.time_ns() // 1_000_000 + 10_000) * 1_000_000  # 10 s ahead: a fresh ms
    _frozen_clock(monkeypatch, lambda: fixed)
    values = [new_id() for _ in range(5_000)]
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert {v[:12] for v in values} == {f"{fixed // 1_000_000:012x}"}


def test_strictly_increasing_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    now_ms = time.time_ns() // 1_000_000 + 20_000
    clock = iter([now_ms, now_ms + 5, now_ms - 1_000, now_ms - 2_000, now_ms + 5, now_ms + 6])
    _frozen_clock(monkeypatch, lambda: next(clock) * 1_000_000)
    values = [new_id() for _ in range(6)]
    assert values == sorted(values)
    assert len(set(values)) == 6


def test_counter_overflow_borrows_the_next_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed_ms = time.time_ns() // 1_000_000 + 30_000
    _frozen_clock(monkeypatch, lambda: fixed_ms * 1_000_000)
    first = new_id()
    monkeypatch.setattr(ids, "_last_tail", ids._TAIL_MAX)
    second = new_id()
    third = new_id()
    assert first < second < third
    assert int(second[:12], 16) == fixed_ms + 1
    assert is_id(second) and is_id(third)


def test_time_ordered_across_milliseconds() -> None:
    before_ms = time.time_ns() // 1_000_000
    first = new_id()
    time.sleep(0.005)
    second = new_id()
    after_ms = time.time_ns() // 1_000_000
    assert first < second
    # The leading 12 hex characters are the creation time in milliseconds.
    assert before_ms <= int(first[:12], 16) <= int(second[:12], 16) <= after_ms + 1


def test_unique_and_ordered_per_thread_across_threads() -> None:
    results: dict[int, list[str]] = {}

    def work(n: int) -> None:
        results[n] = [new_id() for _ in range(2_000)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [v for values in results.values() for v in values]
    assert len(set(everything)) == len(everything) == 16_000
    for values in results.values():
        assert values == sorted(values)


def test_a_run_of_ids_is_distinct_and_ordered() -> None:
    assert [new_id() for _ in range(0)] == []
    values = [new_id() for _ in range(50)]
    assert len(values) == 50 and values == sorted(values) and len(set(values)) == 50


@pytest.mark.parametrize(
    "value",
    ["0" * 24, "f" * 24, "0123456789abcdef01234567", "01a217bf15ea002dd5b7270c"],
)
def test_is_id_accepts(value: str) -> None:
    assert is_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0" * 23,
        "0" * 25,
        "F" * 24,
        "0123456789ABCDEF01234567",
        "g" * 24,
        " " + "0" * 23,
        "0" * 23 + " ",
        "0" * 24 + " ",
        "0" * 24 + "\n",
        "\n" + "0" * 24,
        "0x" + "0" * 22,
        "0" * 12 + "-" + "0" * 11,
        "\uff10" * 24,  # fullwidth digits
    ],
)
def test_is_id_refuses(value: str) -> None:
    assert not is_id(value)
