"""Runs that stop: a heartbeat kept by the process running a run, and the reaper of runs
whose process ended.

An import or a scoring run is a row with status `running` until its process marks it
done or failed. A process killed (SIGKILL, out of memory, power) marks nothing, so the
row would say `running` forever. While a run is open, a thread of its process stamps the
row's `heartbeat_at` every quarter of the lease (`INTENTLY_RUN_LEASE_S`); the stamp is
independent of the run's progress, so a slow batch or a vendor's long answer keeps it.
`reap` marks failed the running rows whose stamp (or start, before the first stamp) is
older than the lease: on start-up, on the worker's minute tick, and when runs are listed.

The tables given must have `workspace_id`, `id`, `status`, `started_at`, `finished_at`,
`error` and `heartbeat_at` columns.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from intently.kit.db import read_tx, write_tx
from intently.kit.timefmt import now_us

log = logging.getLogger("intently.heartbeat")

STOPPED = "stopped: the process running it ended (no heartbeat for {seconds:g} s)"


class Heartbeat:
    """Stamps a run's row every quarter of `lease_s` from a daemon thread (it dies with
    the process, which is the point) until `stop()`, or until `owner` (the object that
    runs the run) is garbage: a run dropped on an unforeseen path is not kept alive by a
    server process that lives on."""

    def __init__(
        self,
        engine: Engine,
        table: Table,
        ws: int,
        run_id: str,
        lease_s: float,
        owner: object | None = None,
    ) -> None:
        self.engine, self.table, self.ws, self.run_id = engine, table, ws, run_id
        self.every = max(lease_s / 4, 0.05)
        self._owner = weakref.ref(owner) if owner is not None else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        t = self.table
        while not self._stop.wait(self.every):
            if self._owner is not None and self._owner() is None:
                return
            try:
                with write_tx(self.engine) as conn:
                    conn.execute(
                        update(t)
                        .where(t.c.workspace_id == self.ws, t.c.id == self.run_id)
                        .where(t.c.status == "running")
                        .values(heartbeat_at=now_us())
                    )
            except Exception:  # the database is away: the run itself will say so
                log.warning("heartbeat of run %s failed", self.run_id, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=self.every + 5)


@contextmanager
def heartbeat(engine: Engine, table: Table, ws: int, run_id: str, lease_s: float) -> Iterator[None]:
    """A `Heartbeat` for the run while the block runs."""
    beat = Heartbeat(engine, table, ws, run_id, lease_s)
    try:
        yield
    finally:
        beat.stop()


def _lapsed(
    table: Table, lease_s: float, now: int, ws: int | None, where: Sequence[ColumnElement[Any]]
) -> list[ColumnElement[Any]]:
    conditions = [
        table.c.status == "running",
        func.coalesce(table.c.heartbeat_at, table.c.started_at) < now - int(lease_s * 1e6),
        *where,
    ]
    return [table.c.workspace_id == ws, *conditions] if ws is not None else conditions


def reap(
    engine: Engine,
    table: Table,
    lease_s: float,
    *,
    now: int | None = None,
    ws: int | None = None,
    where: Sequence[ColumnElement[Any]] = (),
) -> int:
    """Mark failed the running runs (of workspace `ws`, or all) not stamped for `lease_s`;
    returns how many. `where` narrows the runs (a kind another mechanism recovers). Looks
    first in a read transaction, so a list of runs takes the write lock only when needed."""
    now = now_us() if now is None else now
    conditions = _lapsed(table, lease_s, now, ws, where)
    with read_tx(engine) as conn:
        if conn.execute(select(table.c.id).where(*conditions).limit(1)).first() is None:
            return 0
    with write_tx(engine) as conn:
        result = conn.execute(
            update(table)
            .where(*conditions)
            .values(status="failed", finished_at=now, error=STOPPED.format(seconds=lease_s))
        )
    n = int(result.rowcount or 0)
    if n:
        log.warning("%d %s row(s) marked failed: their process ended", n, table.name)
    return n
