"""Runs that stop: an import or a scoring run whose process is killed (SIGKILL) is shown
as failed once its heartbeat lapses, never `running` forever; a live run keeps its own."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from intently.kit.db import read_tx, write_tx
from intently.kit.heartbeat import STOPPED, Heartbeat, reap
from intently.kit.ids import new_id
from intently.kit.jobs import libpq_url
from intently.kit.timefmt import now_us
from intently.settings import get_settings
from intently.signals import repository as signals_repo
from intently.signals.store import IngestRun, reap_stopped_runs
from intently.signals.tables import ingest_runs
from tests.ops.conftest import command_env
from tests.support.api import Workspace
from tests.support.data import acc
from tests.support.vendor_files import bombora_csv, bombora_row

LEASE_S = 2.0


@pytest.fixture
def short_lease(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A 2 s lease here and in the killed processes (settings are cached: cleared)."""
    monkeypatch.setenv("INTENTLY_RUN_LEASE_S", str(LEASE_S))
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@contextmanager
def runs_locked(url: str, table: str) -> Iterator[Any]:
    """A cursor holding the lock the run's own writes need (SQLite: the write lock;
    PostgreSQL: its runs table), so a run seen `running` here cannot end meanwhile."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(str(make_url(url).database), timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            finally:
                conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    with psycopg.connect(libpq_url(url)) as pg, pg.transaction():
        pg.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        yield pg


def kill_mid_run(url: str, table: str, ws: int, args: list[str]) -> str:
    """Start `intently ARGS`, SIGKILL it while its new run is `running`; the run's id."""
    q = f"SELECT id, status FROM {table} WHERE workspace_id = {int(ws)} ORDER BY started_at"
    with runs_locked(url, table) as db:
        before = {r[0] for r in db.execute(q).fetchall()}
    env = command_env(url, INTENTLY_RUN_LEASE_S=str(LEASE_S))
    for _ in range(5):  # a run that ended before it was seen is started again
        proc = subprocess.Popen(
            [sys.executable, "-m", "intently", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                with runs_locked(url, table) as db:
                    new = [r for r in db.execute(q).fetchall() if r[0] not in before]
                    if new and new[-1][1] == "running":
                        proc.kill()  # SIGKILL: no handler, no finally, no last write
                        proc.wait(30)
                        return str(new[-1][0])
                    before |= {r[0] for r in new}
                if proc.poll() is not None:
                    break
                time.sleep(0.003)
            else:
                raise AssertionError(f"no {table} row appeared for {args}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    raise AssertionError(f"{args} always ended before it could be killed")


def eventually(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_a_killed_import_is_shown_failed_after_the_lease(
    database_url: str, workspace: Workspace, tmp_path: Path, short_lease: None
) -> None:
    rows = [
        bombora_row(f"d{i}.example.com", topic, 70 + i % 30, Week="2026-11-23")
        for i in range(8000)
        for topic in ("CRM", "Payroll")
    ]
    path = tmp_path / "surge.csv"
    path.write_bytes(bombora_csv(rows, [*rows[0].keys()]))
    run_id = kill_mid_run(
        database_url,
        "ingest_runs",
        workspace.id,
        ["import", "bombora", str(path), "--workspace", workspace.name],
    )
    killed_at = time.monotonic()

    def status() -> dict[str, Any] | None:
        r = workspace.api.get(f"/ingest/runs/{run_id}")
        assert r.status_code == 200, r.text
        run: dict[str, Any] = r.json()["data"]
        return run if run["status"] != "running" else None

    run = eventually(status)
    assert run is not None, "the killed import still says running"
    assert run["status"] == "failed" and run["error"].startswith("stopped: the process")
    assert time.monotonic() - killed_at <= 30
    listed = workspace.api.get("/ingest/runs").json()["data"]["data"]
    assert [r["status"] for r in listed if r["runId"] == run_id] == ["failed"], listed


def test_a_killed_scoring_run_is_shown_failed_after_the_lease(
    database_url: str, workspace: Workspace, short_lease: None
) -> None:
    for start in range(0, 3000, 100):
        body = {"accounts": [acc(f"a{i}.example.com") for i in range(start, start + 100)]}
        assert workspace.api.post("/accounts", json=body).status_code == 200
    run_id = kill_mid_run(
        database_url,
        "scoring_runs",
        workspace.id,
        ["score", "--full", "--workspace", workspace.name],
    )

    def status() -> dict[str, Any] | None:
        r = workspace.api.get("/scoring/runs")
        assert r.status_code == 200, r.text
        run: dict[str, Any] = next(x for x in r.json()["data"] if x["runId"] == run_id)
        return run if run["status"] != "running" else None

    run = eventually(status)
    assert run is not None, "the killed scoring run still says running"
    assert run["status"] == "failed" and run["error"].startswith("stopped: the process")
    # The workspace scores again afterwards.
    r = workspace.api.post("/scoring/runs", json={"full": True})
    assert r.status_code in (200, 201), r.text


def test_a_live_run_keeps_its_heartbeat_past_the_lease(engine: Any, workspace: Workspace) -> None:
    lease = 0.4
    run_id, started = new_id(), now_us()
    with write_tx(engine) as conn:
        signals_repo.insert_run(
            conn,
            {
                "workspace_id": workspace.id, "id": run_id, "source": "bombora", "kind": "file",
                "label": "live.csv", "status": "running", "started_at": started,
                "read": 0, "accepted": 0, "updated": 0, "duplicate": 0, "rejected": 0,
                "skipped": 0, "reasons": {}, "error": None, "heartbeat_at": started,
            },
        )  # fmt: skip

    def status() -> tuple[str, str | None]:
        with read_tx(engine) as conn:
            row = conn.execute(
                select(ingest_runs.c.status, ingest_runs.c.error).where(
                    ingest_runs.c.workspace_id == workspace.id, ingest_runs.c.id == run_id
                )
            ).one()
        return str(row[0]), row[1]

    beat = Heartbeat(engine, ingest_runs, workspace.id, run_id, lease)
    try:
        time.sleep(lease * 3)  # three leases long: stamped all the while
        assert reap(engine, ingest_runs, lease, ws=workspace.id) == 0
        assert status() == ("running", None)
    finally:
        beat.stop()
    time.sleep(lease * 1.5)  # no one stamps it now
    assert reap(engine, ingest_runs, lease, ws=workspace.id) == 1
    assert status() == ("failed", STOPPED.format(seconds=lease))


def test_a_run_dropped_without_finishing_stops_its_heartbeat(
    engine: Any, workspace: Workspace, tmp_path: Path, short_lease: None
) -> None:
    # An IngestRun that its caller loses on an unforeseen path (never finished) must not
    # be kept `running` by a server process that lives on.

    run = IngestRun(engine, workspace.id, "bombora", "file", "dropped.csv")
    run_id = run.run_id
    time.sleep(LEASE_S * 1.5)
    assert reap_stopped_runs(engine, workspace.id) == 0  # alive: stamped meanwhile
    del run
    time.sleep(LEASE_S * 1.5)
    assert reap_stopped_runs(engine, workspace.id) == 1
    with read_tx(engine) as conn:
        row = signals_repo.get_run(conn, workspace.id, run_id)
    assert row is not None and row["status"] == "failed"
