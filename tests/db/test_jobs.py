"""The job queue on the test database: every task runs exactly once, however many
consumers take from the queue; the schedule and the result store behave as huey expects.

On PostgreSQL this is our own `PostgresStorage`; on SQLite huey's storage in a file
beside the database."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from huey import Huey
from huey.constants import EmptyData

from intently.kit.jobs import PostgresStorage, libpq_url, make_huey


@pytest.fixture
def queue_url(database_url: str, tmp_path: Path) -> str:
    # A SQLite test database gets a queue file of its own per test (huey's file).
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/db.sqlite3"
    return database_url


def fresh_huey(url: str) -> Huey:
    h = make_huey(url)
    # A queue name of its own, so tests running in parallel never share tasks.
    h.storage.name = f"test-{uuid.uuid4().hex[:10]}"
    h.name = h.storage.name
    return h


def test_the_queue_matches_the_database(database_url: str) -> None:
    h = make_huey(database_url)
    if database_url.startswith("postgres"):
        assert isinstance(h.storage, PostgresStorage)
    else:
        assert h.storage.filename.endswith("-jobs")


def test_every_task_runs_exactly_once_with_two_consumers(queue_url: str) -> None:
    h = fresh_huey(queue_url)
    seen: Counter[int] = Counter()
    lock = threading.Lock()

    @h.task()
    def record(n: int) -> int:
        with lock:
            seen[n] += 1
        return n * 2

    results = [record(i) for i in range(60)]
    # Two consumers on two storages (two connections), as two worker processes would be.
    other = Huey(h.name, storage_class=type(h.storage), **_storage_kwargs(h))
    other._registry = h._registry
    consumers = [
        c.create_consumer(
            workers=2, worker_type="thread", periodic=False, check_worker_health=False
        )
        for c in (h, other)
    ]
    for c in consumers:
        c.start()
    try:
        deadline = time.monotonic() + 30
        while sum(seen.values()) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for c in consumers:
            c.stop(graceful=True)
    assert sorted(seen) == list(range(60))
    assert set(seen.values()) == {1}
    assert [r.get(blocking=True, timeout=5) for r in results[:5]] == [0, 2, 4, 6, 8]
    assert h.storage.queue_size() == 0


def _storage_kwargs(h: Huey) -> dict[str, Any]:
    if isinstance(h.storage, PostgresStorage):
        return {"conninfo": h.storage.conninfo}
    return {"filename": h.storage.filename}


def test_schedule_returns_due_items_once(queue_url: str) -> None:
    s = fresh_huey(queue_url).storage
    now = datetime.now(UTC).replace(tzinfo=None)
    s.add_to_schedule(b"later", now + timedelta(hours=1))
    s.add_to_schedule(b"first", now - timedelta(seconds=2))
    s.add_to_schedule(b"second", now - timedelta(seconds=1))
    assert s.schedule_size() == 3
    assert s.read_schedule(now) == [b"first", b"second"]
    assert s.read_schedule(now) == []
    assert s.scheduled_items() == [b"later"]
    s.flush_schedule()
    assert s.schedule_size() == 0


def test_results_and_locks(queue_url: str) -> None:
    s = fresh_huey(queue_url).storage
    assert s.put_if_empty("lock", b"1") is True
    assert s.put_if_empty("lock", b"2") is False
    assert s.peek_data("lock") == b"1"
    s.put_data("r", b"x")
    s.put_data("r", b"y")
    assert s.peek_many(["r", "lock", "missing"]) == {"r": b"y", "lock": b"1"}
    assert s.pop_data("r") == b"y"
    assert s.pop_data("r") is EmptyData
    assert s.has_data_for_key("lock") and not s.has_data_for_key("r")
    s.flush_results()
    assert s.result_store_size() == 0


def test_priority_then_fifo(queue_url: str) -> None:
    s = fresh_huey(queue_url).storage
    for data, priority in ((b"a", 0), (b"b", 5), (b"c", 0)):
        s.enqueue(data, priority)
    assert s.enqueued_items() == [b"b", b"a", b"c"]
    assert [s.dequeue() for _ in range(4)] == [b"b", b"a", b"c", None]


def test_libpq_url_drops_the_driver() -> None:
    assert (
        libpq_url("postgresql+psycopg://postgres@127.0.0.1:5432/x")
        == "postgresql://postgres@127.0.0.1:5432/x"
    )
    assert libpq_url("postgres://u:p@h/db") == "postgresql://u:p@h/db"
