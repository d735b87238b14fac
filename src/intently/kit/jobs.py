"""The job queue's storage: huey's own SQLite storage beside the database file, or PostgreSQL.

huey ships storages for Redis, SQLite and files, none for PostgreSQL. `PostgresStorage`
keeps its queue, schedule and results in three tables of the application database
(created by the Alembic migrations like every other table), so any number of workers on
any hosts share one queue: a task is taken with `FOR UPDATE SKIP LOCKED`, so exactly one
worker gets it.

Periodic tasks fire once per schedule, not once per consumer: every consumer's scheduler
finds the same tasks due each minute, so `IntentlyHuey.read_periodic` first claims the
task's minute in `jobs_ticks` (an INSERT that only one consumer's row survives) and keeps
only the tasks whose minute it won. The ticks live where the queue does: the PostgreSQL
table, or a table of the same shape in the SQLite queue file (`intently serve` and an
`intently worker` on one SQLite database share that file, and a tick never waits for the
application's write lock); the in-memory queue of a `:memory:` database has one process
and keeps them in a set. A consumer that dies between winning a tick and enqueuing loses
that one slot; the next slot runs as usual.

These tables hold no workspace data and so are the one exception to "workspace_id first".
"""

from __future__ import annotations

import calendar
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
from huey import Huey
from huey.api import Task
from huey.constants import EmptyData
from huey.storage import BaseStorage, MemoryStorage, SqliteStorage
from sqlalchemy import BigInteger, Column, Float, Index, LargeBinary, Table, Text
from sqlalchemy.engine import make_url

from intently.kit.db import is_sqlite, metadata, normalise_url

log = logging.getLogger("intently.jobs")

# Ticks older than this are deleted by the consumer that wins a newer one.
TICK_KEEP_SECONDS = 86_400

jobs_task = Table(
    "jobs_task",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("queue", Text, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("priority", Float, nullable=False, default=0.0),
)
Index("ix_jobs_task_queue_priority_id", jobs_task.c.queue, jobs_task.c.priority, jobs_task.c.id)

jobs_schedule = Table(
    "jobs_schedule",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("queue", Text, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("ts", Float, nullable=False),
)
Index("ix_jobs_schedule_queue_ts", jobs_schedule.c.queue, jobs_schedule.c.ts)

jobs_kv = Table(
    "jobs_kv",
    metadata,
    Column("queue", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("value", LargeBinary, nullable=False),
)

# Who ran each periodic task's slot: the first worker to insert (task, slot) runs it, so a
# schedule fires once however many workers run it.
jobs_ticks = Table(
    "jobs_ticks",
    metadata,
    Column("task", Text, primary_key=True),
    Column("slot", BigInteger, primary_key=True),  # the minute, in seconds since the epoch
    Column("claimed_at", Float, nullable=False),
)


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a plain libpq one (psycopg.connect takes it)."""
    return (
        make_url(normalise_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


class PostgresStorage(BaseStorage):
    """huey storage in PostgreSQL: one autocommit connection per storage, used under a lock."""

    def __init__(self, name: str = "huey", conninfo: str = "", **kwargs: Any) -> None:
        super().__init__(name)
        self.conninfo = conninfo
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.conninfo, autocommit=True)
            try:
                with self._conn.cursor() as cur:
                    yield cur
            except psycopg.OperationalError:
                # The connection died (server restart): the next call reconnects.
                self._conn.close()
                self._conn = None
                raise

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def close(self) -> bool:
        with self._lock:
            if self._conn is None:
                return False
            self._conn.close()
            self._conn = None
            return True

    # queue
    def enqueue(self, data: bytes, priority: float | None = None) -> None:
        self._all(
            "INSERT INTO jobs_task (queue, data, priority) VALUES (%s, %s, %s)",
            (self.name, data, priority or 0.0),
        )

    def dequeue(self) -> bytes | None:
        rows = self._all(
            "DELETE FROM jobs_task WHERE id = (SELECT id FROM jobs_task WHERE queue = %s "
            "ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING data",
            (self.name,),
        )
        return bytes(rows[0][0]) if rows else None

    def queue_size(self) -> int:
        return int(self._all("SELECT count(*) FROM jobs_task WHERE queue = %s", (self.name,))[0][0])

    def enqueued_items(self, limit: int | None = None) -> list[bytes]:
        sql = "SELECT data FROM jobs_task WHERE queue = %s ORDER BY priority DESC, id"
        params: tuple[Any, ...] = (self.name,)
        if limit is not None:
            sql += " LIMIT %s"
            params = (self.name, limit)
        return [bytes(r[0]) for r in self._all(sql, params)]

    def flush_queue(self) -> None:
        self._all("DELETE FROM jobs_task WHERE queue = %s", (self.name,))

    # schedule
    def add_to_schedule(self, data: bytes, ts: datetime) -> None:
        self._all(
            "INSERT INTO jobs_schedule (queue, data, ts) VALUES (%s, %s, %s)",
            (self.name, data, ts.timestamp()),
        )

    def read_schedule(self, ts: datetime) -> list[bytes]:
        rows = self._all(
            "DELETE FROM jobs_schedule WHERE id IN (SELECT id FROM jobs_schedule WHERE queue = %s "
            "AND ts <= %s ORDER BY ts, id FOR UPDATE SKIP LOCKED) RETURNING ts, id, data",
            (self.name, ts.timestamp()),
        )
        return [bytes(r[2]) for r in sorted(rows, key=lambda r: (r[0], r[1]))]

    def schedule_size(self) -> int:
        return int(
            self._all("SELECT count(*) FROM jobs_schedule WHERE queue = %s", (self.name,))[0][0]
        )

    def scheduled_items(self, limit: int | None = None) -> list[bytes]:
        sql = "SELECT data FROM jobs_schedule WHERE queue = %s ORDER BY ts, id"
        params: tuple[Any, ...] = (self.name,)
        if limit is not None:
            sql += " LIMIT %s"
            params = (self.name, limit)
        return [bytes(r[0]) for r in self._all(sql, params)]

    def flush_schedule(self) -> None:
        self._all("DELETE FROM jobs_schedule WHERE queue = %s", (self.name,))

    # results and locks
    def put_data(self, key: str, value: bytes, is_result: bool = False) -> None:
        self._all(
            "INSERT INTO jobs_kv (queue, key, value) VALUES (%s, %s, %s) "
            "ON CONFLICT (queue, key) DO UPDATE SET value = excluded.value",
            (self.name, key, value),
        )

    def peek_data(self, key: str) -> Any:
        rows = self._all(
            "SELECT value FROM jobs_kv WHERE queue = %s AND key = %s", (self.name, key)
        )
        return bytes(rows[0][0]) if rows else EmptyData

    def peek_many(self, keys: list[str]) -> dict[str, bytes]:
        rows = self._all(
            "SELECT key, value FROM jobs_kv WHERE queue = %s AND key = ANY(%s)",
            (self.name, list(keys)),
        )
        return {r[0]: bytes(r[1]) for r in rows}

    def pop_data(self, key: str) -> Any:
        rows = self._all(
            "DELETE FROM jobs_kv WHERE queue = %s AND key = %s RETURNING value", (self.name, key)
        )
        return bytes(rows[0][0]) if rows else EmptyData

    def has_data_for_key(self, key: str) -> bool:
        return bool(
            self._all("SELECT 1 FROM jobs_kv WHERE queue = %s AND key = %s", (self.name, key))
        )

    def put_if_empty(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        if ttl is not None:
            raise NotImplementedError("ttl is not supported by this storage")
        rows = self._all(
            "INSERT INTO jobs_kv (queue, key, value) VALUES (%s, %s, %s) "
            "ON CONFLICT (queue, key) DO NOTHING RETURNING 1",
            (self.name, key, value),
        )
        return bool(rows)

    def delete_data(self, key: str) -> bool:
        return bool(
            self._all(
                "DELETE FROM jobs_kv WHERE queue = %s AND key = %s RETURNING 1", (self.name, key)
            )
        )

    def result_store_size(self) -> int:
        return int(self._all("SELECT count(*) FROM jobs_kv WHERE queue = %s", (self.name,))[0][0])

    def result_items(self) -> dict[str, bytes]:
        rows = self._all("SELECT key, value FROM jobs_kv WHERE queue = %s", (self.name,))
        return {r[0]: bytes(r[1]) for r in rows}

    def flush_results(self) -> None:
        self._all("DELETE FROM jobs_kv WHERE queue = %s", (self.name,))

    # periodic ticks
    def claim_tick(self, task: str, slot: int, now: float) -> bool:
        """Whether this consumer is the first to claim `task` for `slot` (then it prunes)."""
        won = bool(
            self._all(
                "INSERT INTO jobs_ticks (task, slot, claimed_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (task, slot) DO NOTHING RETURNING 1",
                (task, slot, now),
            )
        )
        if won:
            # The task's own old rows, off the primary key: a row or two each time.
            self._all(
                "DELETE FROM jobs_ticks WHERE task = %s AND slot < %s",
                (task, slot - TICK_KEEP_SECONDS),
            )
        return won


class SqliteTickStorage(SqliteStorage):
    """huey's SQLite storage with the periodic ticks table in the same file."""

    ddl = [
        *SqliteStorage.ddl,
        "create table if not exists jobs_ticks (task text not null, slot integer not null, "
        "claimed_at real not null, primary key (task, slot))",
    ]

    def claim_tick(self, task: str, slot: int, now: float) -> bool:
        with self.db(commit=True) as curs:
            curs.execute(
                "insert into jobs_ticks (task, slot, claimed_at) values (?, ?, ?) "
                "on conflict (task, slot) do nothing",
                (task, slot, now),
            )
            won = bool(curs.rowcount == 1)
            if won:
                curs.execute(
                    "delete from jobs_ticks where task = ? and slot < ?",
                    (task, slot - TICK_KEEP_SECONDS),
                )
        return won


class MemoryTickStorage(MemoryStorage):
    """huey's in-memory storage (one process) with its ticks in a set."""

    def __init__(self, name: str = "huey", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._ticks: set[tuple[str, int]] = set()
        self._ticks_lock = threading.Lock()

    def claim_tick(self, task: str, slot: int, now: float) -> bool:
        with self._ticks_lock:
            if (task, slot) in self._ticks:
                return False
            self._ticks = {t for t in self._ticks if t[1] >= slot - TICK_KEEP_SECONDS}
            self._ticks.add((task, slot))
            return True


def minute_slot(ts: datetime) -> int:
    """The minute of a naive UTC timestamp, in seconds since the epoch."""
    return calendar.timegm(ts.timetuple()) // 60 * 60


class IntentlyHuey(Huey):
    """Huey whose periodic tasks fire once per minute slot across every consumer."""

    def get_immediate_storage(self) -> BaseStorage:
        return MemoryTickStorage(self.name)

    def tick_key(self, task: Task) -> str:
        return f"{self.name}:{self._registry.task_to_string(type(task))}"

    def read_periodic(self, timestamp: datetime | None) -> list[Task]:
        if timestamp is None:
            timestamp = self._get_timestamp()
        due = super().read_periodic(timestamp)
        if not due:
            return []
        slot = minute_slot(timestamp)
        now = time.time()
        won = []
        for task in due:
            key = self.tick_key(task)
            try:
                won_it = self.storage.claim_tick(key, slot, now)
            except Exception:
                # The database is away: skip the slot (another consumer may have it) rather
                # than run unclaimed, and keep the scheduler thread alive.
                log.exception("periodic %s slot %s not claimed", key, slot)
                continue
            if won_it:
                log.info(
                    "periodic %s slot %s runs here (%s pid %s)",
                    key, slot, socket.gethostname(), os.getpid(),
                )  # fmt: skip
                won.append(task)
            else:
                log.debug("periodic %s slot %s was claimed elsewhere", key, slot)
        return won


def make_huey(database_url: str, *, immediate: bool = False) -> Huey:
    """The queue for this database: SQLite file `<db>-jobs` beside it, or PostgreSQL tables."""
    url = normalise_url(database_url)
    if is_sqlite(url):
        path = make_url(url).database
        if not path or path == ":memory:":
            return IntentlyHuey(
                "intently", storage_class=MemoryTickStorage, utc=True, immediate=immediate
            )
        # A file of its own: huey's tables stay out of the application schema, and queue
        # writes never wait for the application's write lock.
        return IntentlyHuey(
            "intently",
            storage_class=SqliteTickStorage,
            filename=f"{path}-jobs",
            utc=True,
            immediate=immediate,
        )
    return IntentlyHuey(
        "intently",
        storage_class=PostgresStorage,
        conninfo=libpq_url(url),
        utc=True,
        immediate=immediate,
    )
