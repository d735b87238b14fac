"""Dry runs and backtests: computed from the same engine and rules, and writing nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from intently.kit.db import read_clock, read_tx, write_tx
from intently.kit.timefmt import US_PER_DAY, now_us
from intently.scoring.whatif import auc, backtest, dry_run, top_decile_lift
from intently.signals.store import SignalIn, store
from tests.support.api import Api, Workspace


def account(api: Api, domain: str) -> str:
    r = api.post("/accounts", json={"accounts": [{"domain": domain, "name": domain}]})
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["results"][0]["rtp_aid"])


def signals(
    engine: Any, ws: int, domain: str, source: str, type_: str, days_ago: list[int]
) -> None:
    now = now_us()
    with write_tx(engine) as conn:
        store(conn, ws, [SignalIn(domain, source, type_, now - d * US_PER_DAY,
                                  f"{domain}-{type_}-{d}") for d in days_ago])  # fmt: skip


def backdate(engine: Any, ws: int, days: int) -> None:
    """Accounts made by the API are new; a backtest needs them to exist before its cut-off."""
    with write_tx(engine) as conn:
        conn.execute(
            text("UPDATE accounts SET created_at = created_at - :d WHERE workspace_id = :ws"),
            {"d": days * US_PER_DAY, "ws": ws},
        )


def deal(api: Api, ext: str, domain: str, started: date, label: str = "Discovery") -> None:
    body = {"deals": [{"externalDealId": ext, "name": ext, "stageLabel": label,
                       "startDate": started.isoformat(),
                       "associatedAccounts": [{"domain": domain}]}]}  # fmt: skip
    assert api.post("/deals", json=body).status_code == 200


# ---- the metrics, by hand ------------------------------------------------------------------


def test_auc_by_hand() -> None:
    assert auc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert auc([4, 3, 2, 1], [False, False, True, True]) == 0.0
    assert auc([1, 1, 1, 1], [False, True, False, True]) == 0.5
    # one positive (score 2) over negatives 1, 2, 3: beats one, ties one, loses one
    assert auc([1, 2, 2, 3], [False, True, False, False]) == pytest.approx(0.5)
    assert auc([1, 2], [True, True]) is None


def test_top_decile_lift_by_hand() -> None:
    scores = list(range(20))  # top decile: the 2 highest
    outcomes = [False] * 18 + [True, False]
    # 1 of the top 2 converted (50%); overall 1 of 20 (5%): lift 10
    assert top_decile_lift(scores, outcomes) == pytest.approx(10.0)
    assert top_decile_lift(scores, [False] * 20) is None


# ---- dry run ---------------------------------------------------------------------------------


def test_a_dry_run_reports_moves_and_writes_nothing(
    api: Api, engine: Any, workspace: Workspace
) -> None:
    ws = workspace.id
    hot, cold = account(api, "hot.io"), account(api, "cold.io")
    signals(engine, ws, "hot.io", "g2", "pricing", [1, 2])
    r = api.post("/scoring/runs", json={"full": True})
    assert r.status_code in (200, 201), r.text
    with read_tx(engine) as conn:
        clock = read_clock(conn, ws)
    before = api.get(f"/accounts/{hot}").json()["data"]
    # A stage list in which nobody is more than "Anyone": everybody would move there.
    report = dry_run(engine, ws, {"stages": {"stages": [{"name": "Anyone"}]}})
    assert report["accounts"] == 2
    assert report["scoresChanged"] == 0
    moved = {(m["from"], m["to"]): m["accounts"] for m in report["stageMoves"]}
    assert sum(moved.values()) == 2 and all(to == "Anyone" for _, to in moved)
    # Nothing written: same account, same clock, same stage list.
    assert api.get(f"/accounts/{hot}").json()["data"] == before
    with read_tx(engine) as conn:
        assert read_clock(conn, ws) == clock
    assert api.get("/stages").json()["data"]["stages"][0]["name"] == "Customer"
    assert cold


def test_a_dry_run_of_a_model_shows_the_score_distribution(
    api: Api, engine: Any, workspace: Workspace
) -> None:
    ws = workspace.id
    account(api, "dist.io")
    signals(engine, ws, "dist.io", "website", "page_view", [1, 2, 3])
    model = api.get("/scoring/model").json()["data"]["model"]
    model["sources"]["website"]["types"]["page_view"]["enabled"] = False
    report = dry_run(engine, ws, {"model": model})
    assert report["scoreBefore"]["accounts"] == report["scoreAfter"]["accounts"] == 1
    assert report["scoreAfter"]["mean"] == 0
    assert sum(b["accounts"] for b in report["scoreAfter"]["buckets"]) == 1


def test_a_dry_run_refuses_an_invalid_proposal(engine: Any, workspace: Workspace) -> None:
    from intently.kit.errors import BadRequest, ValidationFailed

    with pytest.raises(BadRequest):
        dry_run(engine, workspace.id, {})
    with pytest.raises(ValidationFailed):
        dry_run(engine, workspace.id, {"stages": {"stages": []}})


# ---- backtest ------------------------------------------------------------------------------------


def test_a_backtest_scores_as_of_the_cut_off_against_later_deals(
    api: Api, engine: Any, workspace: Workspace
) -> None:
    ws = workspace.id
    today = datetime.now(UTC).date()
    cutoff = today - timedelta(days=30)
    for d in ("buyer.io", "browser.io", "idle.io", "old.io", "late.io"):
        account(api, d)
    backdate(engine, ws, 60)
    signals(engine, ws, "buyer.io", "g2", "pricing", [35, 40])  # strong intent before
    signals(engine, ws, "browser.io", "website", "page_view", [33])  # weak intent before
    signals(engine, ws, "idle.io", "g2", "pricing", [5, 6, 7])  # only after: must not count
    deal(api, "D-buy", "buyer.io", cutoff + timedelta(days=5))  # converts in the horizon
    deal(api, "D-old", "old.io", cutoff - timedelta(days=10))  # already in pipeline
    deal(api, "D-late", "late.io", cutoff + timedelta(days=25))  # after the horizon
    report = backtest(engine, ws, as_of=cutoff, horizon_days=20)
    assert report["accounts"] == 4  # old.io excluded: it had a deal before the cut-off
    assert report["excludedWithEarlierDeal"] == 1
    assert report["converted"] == 1 and report["baseRate"] == 0.25
    assert report["rocAuc"] == 1.0  # buyer.io outscored every non-buyer
    assert report["horizonComplete"] is True
    assert "before the cut-off" in report["leakageRule"]
    by_stage = {s["stage"]: s for s in report["stages"]}
    assert sum(s["accounts"] for s in report["stages"]) == 4
    assert by_stage["Unaware"]["accounts"] >= 1  # idle.io: its signals came later


def test_a_backtest_needs_a_past_date_and_a_sane_horizon(engine: Any, workspace: Workspace) -> None:
    from intently.kit.errors import BadRequest

    future = datetime.now(UTC).date() + timedelta(days=1)
    with pytest.raises(BadRequest, match="must be in the past"):
        backtest(engine, workspace.id, as_of=future)
    with pytest.raises(BadRequest, match="between 1 and 3650"):
        backtest(engine, workspace.id, as_of=date(2026, 1, 1), horizon_days=0)


# ---- through the API and the command line -------------------------------------------------


def test_dry_run_and_backtest_over_http(api: Api, engine: Any, workspace: Workspace) -> None:
    account(api, "web.io")
    r = api.post("/scoring/dry-run", json={"stages": {"stages": [{"name": "All"}]}})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["stageMoves"] == [{"from": None, "to": "All", "accounts": 1}]
    errors = api.post("/scoring/dry-run", json={"stages": {"stages": []}})
    assert errors.status_code == 400
    r = api.get("/scoring/backtest", params={"asOf": "2026-01-01", "horizonDays": "30"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["accounts"] == 0  # the account did not exist then
    bad = api.get("/scoring/backtest", params={"asOf": "soon"})
    assert bad.json()["data"][0]["constraints"] == {"isISO8601": "asOf must be a date (YYYY-MM-DD)"}
    bad = api.get("/scoring/backtest", params={"asOf": "2026-01-01", "horizonDays": "0"})
    assert bad.json()["data"][0]["property"] == "horizonDays"


def test_backtest_and_dry_run_commands(
    api: Api, engine: Any, workspace: Workspace, database_url: str, tmp_path: Any
) -> None:
    from tests.support.cli import intently

    account(api, "cli.io")
    done = intently(database_url, "backtest", "--as-of", "2026-01-01", "--horizon", "30",
                    "--workspace", workspace.name)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "backtest as of 2026-01-01, horizon 30 days" in done.stdout
    assert "leakage rule: Scores and stages as of the cut-off" in done.stdout
    f = tmp_path / "proposal.json"
    f.write_text('{"stages": {"stages": [{"name": "Everyone"}]}}')
    done = intently(database_url, "scoring", "dry-run", str(f), "--workspace", workspace.name)
    assert done.returncode == 0, done.stderr
    assert '"to": "Everyone"' in done.stdout
    done = intently(database_url, "backtest", "--as-of", "later", "--workspace", workspace.name)
    assert done.returncode == 2 and "--as-of 'later' is not a date" in done.stderr
