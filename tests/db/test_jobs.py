"""The job queue on the test database: every task runs exactly once, however many
consumers take from the queue; the schedule and the result store behave as huey expects.

On PostgreSQL this is our own `PostgresStorage`; on SQLite huey's storage in a file
beside the database."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from huey import Huey, crontab
from huey.constants import EmptyData
from sqlalchemy.engine import make_url

from intently.kit.jobs import (
    IntentlyHuey,
    MemoryTickStorage,
    PostgresStorage,
    SqliteTickStorage,
    libpq_url,
    make_huey,
)
from intently.kit.migrate import migrate


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


# ---- periodic tasks: once per schedule, however many consumers ------------------------------


def twin(h: Huey) -> Huey:
    """A second huey on the same queue with its own storage (connection), as another
    worker process would have."""
    other = type(h)(h.name, storage_class=type(h.storage), utc=True, **_storage_kwargs(h))
    other.storage.name = h.storage.name
    other._registry = h._registry
    return other


def test_a_periodic_task_fires_once_per_slot_across_consumers(
    queue_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    h = fresh_huey(queue_url)

    @h.periodic_task(crontab(minute="*"))
    def every_minute() -> None: ...

    @h.periodic_task(crontab(minute="*/2"))
    def every_other_minute() -> None: ...

    # huey's own scheduler step, in two consumers of two hueys racing on each minute
    schedulers = [
        c.create_consumer(periodic=True, check_worker_health=False)._create_scheduler()
        for c in (h, twin(h))
    ]
    start = datetime(2026, 1, 1, 10, 0)
    barrier = threading.Barrier(2)

    def run(s: Any) -> None:
        for minute in range(10):
            barrier.wait()
            s.enqueue_periodic_tasks(start + timedelta(minutes=minute, seconds=minute))

    caplog.set_level(logging.INFO, logger="intently.jobs")
    threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    queued = Counter(t.name for t in h.pending())
    assert queued == {"every_minute": 10, "every_other_minute": 5}
    runs = [r.getMessage() for r in caplog.records if "runs here" in r.getMessage()]
    assert len(runs) == 15
    assert sum(f".every_minute slot {1_767_261_600 + 540} runs here" in m for m in runs) == 1
    # a consumer coming late for a minute already run finds it claimed
    assert h.read_periodic(start + timedelta(minutes=9, seconds=59)) == []


def test_a_slot_that_cannot_be_claimed_is_skipped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    h = make_huey("sqlite:///:memory:")

    @h.periodic_task(crontab(minute="*"))
    def every_minute() -> None: ...

    def away(*args: Any) -> bool:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(h.storage, "claim_tick", away)
    assert h.read_periodic(datetime(2026, 1, 1, 10, 0)) == []  # not run unclaimed, no raise
    assert "every_minute slot 1767261600 not claimed" in caplog.text
    monkeypatch.undo()
    assert [t.name for t in h.read_periodic(datetime(2026, 1, 1, 10, 1))] == ["every_minute"]


def test_ticks_are_recorded_and_pruned_after_a_day(queue_url: str, database_url: str) -> None:
    s = fresh_huey(queue_url).storage
    task = f"{s.name}:tests.task"
    slot = 1_767_261_600
    assert s.claim_tick(task, slot, time.time())
    assert not s.claim_tick(task, slot, time.time())
    assert s.claim_tick(f"{task}2", slot, time.time())  # another task, the same minute
    assert ticks(s, database_url, task) == [slot]
    assert s.claim_tick(task, slot + 86_400 + 60, time.time())  # a day on: the old one goes
    assert ticks(s, database_url, task) == [slot + 86_400 + 60]
    assert ticks(s, database_url, f"{task}2") == [slot]  # pruned per task


def ticks(storage: Any, database_url: str, task: str) -> list[int]:
    """The slots recorded for the task: in the application database on PostgreSQL, in the
    queue file on SQLite."""
    if isinstance(storage, PostgresStorage):
        rows = storage._all("SELECT slot FROM jobs_ticks WHERE task = %s ORDER BY slot", (task,))
    else:
        with storage.db() as curs:
            curs.execute("SELECT slot FROM jobs_ticks WHERE task = ? ORDER BY slot", (task,))
            rows = curs.fetchall()
    return [int(r[0]) for r in rows]


def test_the_worker_queue_claims_its_ticks(database_url: str) -> None:
    from intently.worker import huey

    assert isinstance(huey, IntentlyHuey)
    assert isinstance(make_huey(database_url, immediate=True).storage, MemoryTickStorage)
    assert isinstance(make_huey("sqlite:///:memory:").storage, MemoryTickStorage)
    if database_url.startswith("sqlite"):
        assert isinstance(make_huey(database_url).storage, SqliteTickStorage)


def test_two_worker_processes_run_each_periodic_task_once(
    database_url: str, is_postgres: bool, tmp_path: Path
) -> None:
    if not is_postgres:
        pytest.skip("`intently worker` runs on PostgreSQL only; SQLite has one consumer")
    name = f"intently_ticks_{uuid.uuid4().hex[:10]}"
    admin = libpq_url(make_url(database_url).set(database="postgres").render_as_string(False))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(database_url).set(database=name).render_as_string(False)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        migrate(url)  # before the workers, which would both migrate an empty database at once
        # Both schedulers look for due tasks as they start: keep that inside one minute.
        if time.time() % 60 > 45:
            time.sleep(61 - time.time() % 60)
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTENTLY_")}
        env |= {
            "INTENTLY_DATABASE_URL": url, "INTENTLY_LOG_FORMAT": "text",
            "INTENTLY_LOG_LEVEL": "DEBUG", "INTENTLY_WEBHOOK_DISPATCH": "false",
        }  # fmt: skip
        logs = [tmp_path / f"worker{i}.log" for i in range(2)]
        for log_path in logs:
            with log_path.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "intently", "worker", "--threads", "1"],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=out,
                    )
                )
        every_minute = ("rescore_touched_accounts", "resume_scoring_parts")

        def outcomes() -> list[tuple[str, str, str]]:
            """(task, slot, 'runs here' | 'was claimed elsewhere') from both logs."""
            found = []
            for text in (p.read_text(errors="replace") for p in logs):
                found += re.findall(
                    r"periodic intently:intently\.worker\.(\w+) slot (\d+) "
                    r"(runs here|was claimed elsewhere)",
                    text,
                )
            return [f for f in found if f[0] in every_minute]

        deadline = time.monotonic() + 40
        while len(outcomes()) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        seen = outcomes()
        assert len(seen) >= 4, [p.read_text()[-2000:] for p in logs]
        slots = {slot for _, slot, _ in seen}
        for task in every_minute:
            for slot in slots:
                said = sorted(o for t, s, o in seen if (t, s) == (task, slot))
                assert said in (["runs here"], ["runs here", "was claimed elsewhere"]), seen
        # the two did race for the same minute, and the second stood back
        assert any(o == "was claimed elsewhere" for _, _, o in seen), seen
        with psycopg.connect(libpq_url(url)) as conn:
            rows = conn.execute("SELECT task, slot FROM jobs_ticks").fetchall()
        ran = {(t, s) for t, s, o in seen if o == "runs here"}
        assert {(t.rsplit(".", 1)[1], str(s)) for t, s in rows} >= ran
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
