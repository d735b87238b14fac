"""Score history backfill: past days scored as of then, only where no run recorded them."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from intently.kit.errors import BadRequest
from intently.scoring.whatif import backfill_history
from intently.stages.tables import journey_days as jd
from tests.support.api import Workspace
from tests.support.scoring import push_accounts, signals, today


def _history(engine: Any, ws: int, aid: str) -> dict[int, tuple[float, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(jd.c.day, jd.c.score, jd.c.stage).where(
                jd.c.workspace_id == ws, jd.c.account_id == aid
            )
        ).all()
    return {int(r[0]): (float(r[1]), str(r[2])) for r in rows}


def test_past_days_count_only_the_signals_before_them(engine: Any, workspace: Workspace) -> None:
    ws, day = workspace.id, today()
    early, late = push_accounts(workspace.api, "early.com", "late.com")
    signals(engine, ws, "early.com", "g2", "pricing", 40, 39, 38)  # 40 days ago
    signals(engine, ws, "late.com", "g2", "pricing", 5, 4, 3)  # last week
    written = backfill_history(engine, ws, days=56, every=14, today=day)
    assert written == 2 * 4  # days 56, 42, 28 and 14 days ago for both accounts
    e, lt = _history(engine, ws, early), _history(engine, ws, late)
    assert sorted(e) == [day - 56, day - 42, day - 28, day - 14]
    assert e[day - 56][0] == 0 and e[day - 42][0] == 0  # before its signals
    assert e[day - 28][0] > 0  # after them
    assert all(score == 0 for score, _ in lt.values())  # its signals came later
    # Scored as the run scores: today's full run gives the same score as a point of today.
    assert workspace.api.post("/scoring/runs", json={"full": True}).status_code == 200
    with engine.begin() as conn:  # forget the run's point for today, then backfill it
        conn.execute(jd.delete().where(jd.c.workspace_id == ws, jd.c.day == day))
    assert backfill_history(engine, ws, days=14, every=14, today=day + 14) == 2
    stored = workspace.api.get(f"/accounts/{late}").json()["data"]["rtp_account_score"]
    assert _history(engine, ws, late)[day][0] == pytest.approx(stored, abs=0.01)


def test_days_a_run_recorded_are_kept(engine: Any, workspace: Workspace) -> None:
    ws, day = workspace.id, today()
    (aid,) = push_accounts(workspace.api, "kept.com")
    signals(engine, ws, "kept.com", "g2", "pricing", 1)
    assert workspace.api.post("/scoring/runs", json={"full": True}).status_code == 200
    before = _history(engine, ws, aid)[day]
    signals(engine, ws, "kept.com", "g2", "pricing", 0, 0, 0)
    backfill_history(engine, ws, days=7, every=7, today=day + 7)  # writes today's point
    assert _history(engine, ws, aid)[day] == before


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"days": 0}, "days should be from 1 to 365; got 0"), ({"every": 99}, "every should be")],
)
def test_bad_arguments_are_named(
    engine: Any, workspace: Workspace, kw: dict[str, int], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        backfill_history(engine, workspace.id, **kw)


def test_the_cli_backfills(engine: Any, workspace: Workspace, database_url: str) -> None:
    from tests.support.cli import intently

    (aid,) = push_accounts(workspace.api, "cli.com")
    signals(engine, workspace.id, "cli.com", "g2", "pricing", 10)
    done = intently(
        database_url, "scoring", "backfill-history", "--days", "21", "--every", "7",
        "--workspace", workspace.name,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "history: 3 account-days scored" in done.stdout
    assert len(_history(engine, workspace.id, aid)) == 3
    bad = intently(database_url, "scoring", "backfill-history", "--days", "400",
                   "--workspace", workspace.name)  # fmt: skip
    assert bad.returncode == 2 and "days should be from 1 to 365; got 400" in bad.stderr
