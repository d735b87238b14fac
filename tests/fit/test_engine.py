"""Fit in every kind of scoring run: a sharded full run grades as one run does, an
incremental run grades an account whose profile was pushed, and a run of some accounts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from intently import pipeline
from intently.fit import service as fit_service
from tests.support.api import Workspace
from tests.support.fit import MODEL, fit_row, set_profile
from tests.support.scoring import push_accounts, signals

DOMAINS = [f"fit{i}.com" for i in range(6)]


def prepare(ws: Workspace, engine: Any) -> list[str]:
    fit_service.put_model(engine, ws.id, MODEL)
    ids = push_accounts(ws.api, *DOMAINS)
    for i, aid in enumerate(ids):
        set_profile(engine, ws.id, aid, employee_count=100 * i, annual_revenue=4e6 * i)
        signals(engine, ws.id, DOMAINS[i], "g2", "pricing", *range(i))
    return ids


def grades(ws: Workspace, engine: Any, ids: list[str]) -> dict[str, tuple[Any, Any]]:
    rows = {DOMAINS[i]: fit_row(engine, ws.id, a) for i, a in enumerate(ids)}
    return {d: (r["rtp_fit_score"], r["rtp_grade"]) for d, r in rows.items()}


def test_a_sharded_run_grades_as_one_run(
    make_workspace: Callable[[], Workspace], engine: Any
) -> None:
    one, sharded = make_workspace(), make_workspace()
    ref_ids = prepare(one, engine)
    pipeline.run_scoring(engine, one.id)
    ref = grades(one, engine, ref_ids)
    # 0..500 employees and 0..20M revenue: fits 0, 0, 40 (200, 8M), 70 (300, 12M), 70, 70
    assert [f for f, _ in ref.values()] == [0, 0, 40, 70, 70, 70]
    ids = prepare(sharded, engine)
    queued: list[tuple[int, str, int]] = []
    [started] = pipeline.run_claimed(
        engine, "full", workspaces=[sharded.id], shard_size=2,
        enqueue_part=lambda w, r, p: queued.append((w, r, p)),
    )  # fmt: skip
    assert started["parts"] == 3
    for part in reversed(queued):
        assert pipeline.run_part(engine, *part, batch_size=1)["status"] == "done"
    assert grades(sharded, engine, ids) == ref


def test_incremental_and_some_account_runs_grade_what_they_score(
    engine: Any, workspace: Workspace
) -> None:
    api, ws = workspace.api, workspace.id
    fit_service.put_model(engine, ws, MODEL)
    a, b = push_accounts(api, "inc-a.com", "inc-b.com")
    pipeline.run_scoring(engine, ws)
    assert fit_row(engine, ws, a)["rtp_grade"] == "C3"
    # a profile push stamps the account changed, so the incremental run rescores it
    set_profile(engine, ws, a, employee_count=1000, annual_revenue=2e7, touch=True)
    summary = pipeline.run_scoring(engine, ws, full=False)
    assert summary.kind == "incremental" and summary.scored == 1 and summary.changed == 1
    assert fit_row(engine, ws, a)["rtp_fit_score"] == 70
    assert fit_row(engine, ws, a)["rtp_grade"] == "B3"
    set_profile(engine, ws, b, employee_count=300)
    summary = pipeline.run_scoring(engine, ws, account_ids=[b])
    assert summary.changed == 1 and fit_row(engine, ws, b)["rtp_fit_score"] == 40
