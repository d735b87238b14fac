"""Scheduled pulls: a connection is due once its interval has passed, and each due pull is
claimed by exactly one worker, however many look at once."""

from __future__ import annotations

import threading
import types
from typing import Any

import pytest
from sqlalchemy import select

from intently.ingest import schedule
from intently.ingest.connections import describe, set_connection
from intently.kit.db import read_tx
from intently.settings import Settings
from intently.signals.tables import connections as conn_t
from tests.support.api import Workspace
from tests.support.outbound import LOCAL

KEY = "test-credentials-key"
MINUTE = 60_000_000


def connect(engine: Any, ws: int, provider: str = "g2", **config: Any) -> None:
    set_connection(engine, ws, provider, key=KEY, credentials={"token": "t"}, config=config or None)


def mine(claimed: list[tuple[int, str]], ws: int) -> list[str]:
    return [p for w, p in claimed if w == ws]


def test_a_new_connection_is_due_then_waits_its_interval(engine: Any, workspace: Workspace) -> None:
    connect(engine, workspace.id, "g2")
    t0 = 1_900_000_000_000_000
    assert mine(schedule.claim_due(engine, t0, workspace=workspace.id), workspace.id) == ["g2"]
    assert (
        mine(schedule.claim_due(engine, t0 + 59 * MINUTE, workspace=workspace.id), workspace.id)
        == []
    )
    assert mine(
        schedule.claim_due(engine, t0 + 60 * MINUTE, workspace=workspace.id), workspace.id
    ) == ["g2"]


def test_intervals_per_provider_and_per_connection(engine: Any, workspace: Workspace) -> None:
    connect(engine, workspace.id, "bombora")
    connect(engine, workspace.id, "linkedin", interval_minutes=10)
    t0 = 1_900_000_000_000_000
    assert sorted(mine(schedule.claim_due(engine, t0, workspace=workspace.id), workspace.id)) == [
        "bombora",
        "linkedin",
    ]
    later = mine(schedule.claim_due(engine, t0 + 10 * MINUTE, workspace=workspace.id), workspace.id)
    assert later == ["linkedin"]  # bombora waits a day
    assert mine(
        schedule.claim_due(engine, t0 + 24 * 60 * MINUTE, workspace=workspace.id), workspace.id
    ) == [
        "bombora",
        "linkedin",
    ]


def test_a_disabled_connection_is_never_due(engine: Any, workspace: Workspace) -> None:
    connect(engine, workspace.id, "g2")
    set_connection(engine, workspace.id, "g2", key=KEY, enabled=False)
    assert (
        mine(
            schedule.claim_due(engine, 1_900_000_000_000_000, workspace=workspace.id), workspace.id
        )
        == []
    )


def test_concurrent_workers_claim_each_pull_once(engine: Any, workspace: Workspace) -> None:
    connect(engine, workspace.id, "g2")
    connect(engine, workspace.id, "linkedin")
    now = 1_950_000_000_000_000
    results: list[list[tuple[int, str]]] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        results.append(schedule.claim_due(engine, now, workspace=workspace.id))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    claimed = sorted(p for r in results for p in mine(r, workspace.id))
    assert claimed == ["g2", "linkedin"]


def test_a_claim_marks_the_connection_running(engine: Any, workspace: Workspace) -> None:
    connect(engine, workspace.id, "g2")
    schedule.claim_due(engine, 1_900_000_000_000_000, workspace=workspace.id)
    [c] = describe(engine, workspace.id)
    assert (c["last_status"], c["last_run_at"]) == ("running", 1_900_000_000_000_000)


def test_a_failing_pull_is_recorded_and_the_others_go_on(
    engine: Any, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(engine, workspace.id, "g2")

    def broken_pull(*_a: Any, **_k: Any) -> Any:
        raise ConnectionError("g2 unreachable")

    fake = types.SimpleNamespace(pull=broken_pull)
    monkeypatch.setattr(schedule.importlib, "import_module", lambda _name: fake)
    out = schedule.run_pull(engine, Settings(credentials_key=KEY), workspace.id, "g2")
    assert out["status"] == "failed" and out["error"] == "ConnectionError: g2 unreachable"
    with read_tx(engine) as conn:
        row = conn.execute(
            select(conn_t.c.last_status, conn_t.c.last_error).where(
                conn_t.c.workspace_id == workspace.id
            )
        ).one()
    assert tuple(row) == ("failed", "ConnectionError: g2 unreachable")


def test_interval_falls_back_on_a_bad_setting() -> None:
    assert schedule.interval_us("g2", {"interval_minutes": "soon"}) == 60 * MINUTE
    assert schedule.interval_us("g2", {"interval_minutes": 0}) == 60 * MINUTE
    assert schedule.interval_us("linkedin", None) == 24 * 60 * MINUTE


def test_the_scheduled_job_pulls_a_due_connection_for_real(
    engine: Any, workspace: Workspace, database_url: str
) -> None:
    """Claim and pull as the worker does, with the real G2 puller against a fake G2."""
    from datetime import UTC, datetime, timedelta

    from tests.support.fake_g2 import Event, FakeG2

    fake = FakeG2("sched-token").start()
    try:
        fake.company("c1", "Acme", "acme.com")
        when = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        fake.add(Event("s1", when, "products.pricing", "c1", embed="included"))
        set_connection(
            engine, workspace.id, "g2", key=KEY, credentials={"token": "sched-token"},
            config={"base_url": fake.url, "initial_days": 1},
        )  # fmt: skip
        assert schedule.claim_due(engine, workspace=workspace.id) == [(workspace.id, "g2")]
        settings = Settings(database_url=database_url, credentials_key=KEY, outbound_allow=LOCAL)
        out = schedule.run_pull(engine, settings, workspace.id, "g2")
        assert (out["status"], out["accepted"]) == ("done", 1)
        [c] = describe(engine, workspace.id)
        assert c["last_status"] == "done"
        # Claimed just now: not due again until its interval has passed.
        assert schedule.claim_due(engine, workspace=workspace.id) == []
    finally:
        fake.stop()


def test_the_worker_schedules_the_pull_job_every_five_minutes() -> None:
    from datetime import datetime

    from intently.worker import huey, pull_due_connections

    task = pull_due_connections.task_class()
    assert task.name in {t.name for t in huey._registry.periodic_tasks}
    assert task.validate_datetime(datetime(2026, 1, 1, 10, 5))
    assert not task.validate_datetime(datetime(2026, 1, 1, 10, 6))
