"""The scoring schedule: hourly full runs, minutely incremental runs, one worker each."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from intently import pipeline
from intently.kit.db import write_tx
from intently.kit.timefmt import now_us
from intently.scoring import repository as repo
from intently.scoring import service
from tests.support.api import Workspace
from tests.support.scoring import push_accounts, row, signals


def test_concurrent_workers_run_a_workspace_once(engine: Any, workspace: Workspace) -> None:
    push_accounts(workspace.api, "sched.com")
    results: list[list[dict[str, Any]]] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        results.append(pipeline.run_claimed(engine, "incremental", workspaces=[workspace.id]))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done = [r for rs in results for r in rs]
    assert len(done) == 1 and done[0]["workspace"] == workspace.id and "error" not in done[0]
    assert len(service.list_runs(engine, workspace.id)) == 1
    # a worker coming a moment later finds the work done for this interval
    assert pipeline.run_claimed(engine, "incremental", workspaces=[workspace.id]) == []


def test_claims_expire_and_are_per_kind(engine: Any, workspace: Workspace) -> None:
    ws, now = workspace.id, now_us()
    with write_tx(engine) as conn:
        assert repo.claim(conn, ws, "full", now, 1000)
    with write_tx(engine) as conn:
        assert not repo.claim(conn, ws, "full", now + 999, 1000)  # still held
        assert repo.claim(conn, ws, "incremental", now, 1000)  # another kind
    with write_tx(engine) as conn:
        assert repo.claim(conn, ws, "full", now + 1000, 1000)  # a crashed holder's lapsed


def test_new_signals_are_scored_by_the_next_incremental_tick(
    engine: Any, workspace: Workspace
) -> None:
    (aid,) = push_accounts(workspace.api, "tick.com")
    pipeline.run_scoring(engine, workspace.id)  # the hourly run happened
    signals(engine, workspace.id, "tick.com", "g2", "pricing", 0)
    assert row(engine, workspace.id, aid)["rtp_g2_intent_score"] == 0
    [r] = pipeline.run_claimed(engine, "incremental", workspaces=[workspace.id])
    assert r["kind"] == "incremental" and r["changed"] == 1
    assert row(engine, workspace.id, aid)["rtp_g2_intent_score"] == 30.0


def test_the_worker_schedules_both_runs() -> None:
    from intently.worker import huey, rescore_all_workspaces, rescore_touched_accounts

    names = {t.name for t in huey._registry.periodic_tasks}
    full = rescore_all_workspaces.task_class()
    inc = rescore_touched_accounts.task_class()
    assert {full.name, inc.name} <= names
    assert full.validate_datetime(datetime(2026, 1, 1, 10, 0))
    assert not full.validate_datetime(datetime(2026, 1, 1, 10, 1))
    assert inc.validate_datetime(datetime(2026, 1, 1, 10, 1))
    assert inc.validate_datetime(datetime(2026, 1, 1, 10, 2))
