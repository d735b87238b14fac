"""The engine against a real database: hand-computed scores, writes only on change,
incremental runs, a run killed half-way, the stage hook, tenancy."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from intently import pipeline
from intently.kit.db import read_tx
from intently.kit.timefmt import US_PER_DAY
from intently.scoring import repository as repo
from intently.scoring import service
from tests.support.api import Workspace
from tests.support.scoring import MODEL, clock, push_accounts, row, signals, today

SCORES = (
    "rtp_account_score", "rtp_website_intent_score", "rtp_bombora_intent_score",
    "rtp_g2_intent_score", "rtp_advertising_activity_score",
)  # fmt: skip


def scores(r: dict[str, Any]) -> tuple[float, ...]:
    return tuple(r[c] for c in SCORES)


@pytest.fixture
def scored(engine: Any, workspace: Workspace) -> tuple[Workspace, list[str]]:
    ws = workspace.id
    service.put_model(engine, ws, MODEL)
    a, b, c = push_accounts(workspace.api, "alpha.com", "beta.com", "gamma.com")
    # alpha: 2 views today (20) + 1 at 5 days (5) + 1 at 10 days (0) = 25 -> website 25
    signals(engine, ws, "alpha.com", "website", "page_view", 0, 0, 5, 10)
    # alpha: 1 G2 pricing at 6 days (20, inside the window) + 1 at 7 (outside) -> g2 20/100
    signals(engine, ws, "alpha.com", "g2", "pricing", 6, 7)
    # beta: 8 views today = 80 -> capped at 50; 2 pricing = 40 -> capped at 30
    signals(engine, ws, "beta.com", "website", "page_view", *([0] * 8))
    signals(engine, ws, "beta.com", "g2", "pricing", 1, 2)
    # beta: a Bombora surge of 80 at 2 days: 0.5 x 80 x 0.8 = 32 of a source cap of 50
    signals(engine, ws, "beta.com", "bombora", "surge", 2, value=80, topic="crm")
    return workspace, [a, b, c]


def test_hand_computed_scores(engine: Any, scored: tuple[Workspace, list[str]]) -> None:
    workspace, (a, b, c) = scored
    summary = pipeline.run_scoring(engine, workspace.id, place_stages=False)
    assert (summary.scored, summary.changed, summary.model_version) == (3, 2, 1)
    # alpha: website 25, g2 20; weights 1 and 3 (bombora weight 0): (25 + 60) / 4 = 21.25
    assert scores(row(engine, workspace.id, a)) == (21.25, 25.0, 0.0, 20.0, 0.0)
    # beta: website 50 (cap), g2 30 (cap), bombora 32/50 = 64: (50 + 90) / 4 = 35
    assert scores(row(engine, workspace.id, b)) == (35.0, 50.0, 64.0, 30.0, 0.0)
    assert scores(row(engine, workspace.id, c)) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert row(engine, workspace.id, a)["score_model_version"] == 1
    assert row(engine, workspace.id, c)["score_model_version"] == 1
    assert row(engine, workspace.id, a)["rtp_journey_stage"] is None  # left alone


def test_a_second_run_touches_nothing(engine: Any, scored: tuple[Workspace, list[str]]) -> None:
    workspace, ids = scored
    pipeline.run_scoring(engine, workspace.id, place_stages=False)
    before = [row(engine, workspace.id, i) for i in ids]
    clock0 = clock(engine, workspace.id)
    again = pipeline.run_scoring(engine, workspace.id, place_stages=False)
    assert (again.scored, again.changed) == (3, 0)
    assert [row(engine, workspace.id, i) for i in ids] == before
    assert clock(engine, workspace.id) == clock0
    inc = pipeline.run_scoring(engine, workspace.id, full=False, place_stages=False)
    assert inc.kind == "incremental" and inc.changed == 0
    assert clock(engine, workspace.id) == clock0
    # since the first run began only scoring wrote to alpha and beta: nothing counts as
    # touched; from a minute before, all three do (their pushes and signals)
    with read_tx(engine) as conn:
        since = conn.execute(
            text("SELECT min(watermark) FROM scoring_runs WHERE workspace_id = :ws"),
            {"ws": workspace.id},
        ).scalar_one()
        assert repo.touched_since(conn, workspace.id, since) == []
        assert repo.touched_since(conn, workspace.id, since - 60_000_000) == sorted(ids)


def test_changed_accounts_are_stamped(engine: Any, scored: tuple[Workspace, list[str]]) -> None:
    workspace, (a, b, c) = scored
    before = {i: row(engine, workspace.id, i) for i in (a, b, c)}
    pipeline.run_scoring(engine, workspace.id, place_stages=False)
    after = {i: row(engine, workspace.id, i) for i in (a, b, c)}
    for i in (a, b):
        assert after[i]["changed_at"] > before[i]["changed_at"]
        assert after[i]["rtp_last_account_date"] is not None
    # gamma's scores stay 0: only its model version is recorded, no stamp
    assert after[c]["changed_at"] == before[c]["changed_at"]
    assert after[c]["rtp_last_account_date"] is None


def test_incremental_scores_only_accounts_with_new_signals(
    engine: Any, scored: tuple[Workspace, list[str]]
) -> None:
    workspace, (_, _, c) = scored
    pipeline.run_scoring(engine, workspace.id)
    signals(engine, workspace.id, "gamma.com", "g2", "pricing", 0)
    inc = pipeline.run_scoring(engine, workspace.id, full=False)
    assert inc.kind == "incremental"
    assert inc.changed == 1  # gamma got a signal; alpha and beta are looked at, unchanged
    assert scores(row(engine, workspace.id, c)) == (15.0, 0.0, 0.0, 20.0, 0.0)
    # nothing new: the next incremental run changes nothing
    assert pipeline.run_scoring(engine, workspace.id, full=False).changed == 0


def test_incremental_without_a_finished_run_is_full(engine: Any, workspace: Workspace) -> None:
    (a,) = push_accounts(workspace.api, "first.com")
    signals(engine, workspace.id, "first.com", "website", "high_value_page_view", 0)
    s = pipeline.run_scoring(engine, workspace.id, full=False)
    assert s.kind == "full" and s.changed == 1 and s.model_version == 0  # the default model
    assert row(engine, workspace.id, a)["rtp_website_intent_score"] == 10.0


def test_given_accounts_only(engine: Any, scored: tuple[Workspace, list[str]]) -> None:
    workspace, (a, b, _) = scored
    s = pipeline.run_scoring(engine, workspace.id, account_ids=[b])
    assert (s.scored, s.changed, s.kind) == (1, 1, "accounts")
    assert row(engine, workspace.id, a)["rtp_account_score"] == 0.0
    assert row(engine, workspace.id, b)["rtp_account_score"] == 35.0
    # such a run is no starting point for incremental runs: the next one is full
    assert pipeline.run_scoring(engine, workspace.id, full=False).kind == "full"
    assert row(engine, workspace.id, a)["rtp_account_score"] == 21.25


def test_as_of_counts_only_signals_before_it(
    engine: Any, scored: tuple[Workspace, list[str]]
) -> None:
    workspace, (a, _, _) = scored
    # as of 5 days ago: alpha's view at 5 days is today's (10), the one at 10 is 5 days old
    # (5), today's two have not happened; G2 pricing at 6 and 7 days are 1 and 2 days old.
    pipeline.run_scoring(engine, workspace.id, as_of=(today() - 5) * US_PER_DAY)
    r = row(engine, workspace.id, a)
    assert r["rtp_website_intent_score"] == 15.0
    assert r["rtp_g2_intent_score"] == 30.0  # 40, capped at 30
    assert r["rtp_account_score"] == round((15 + 90) / 4, 2)


def test_killed_run_leaves_accounts_whole_and_the_next_run_finishes(
    engine: Any, workspace: Workspace
) -> None:
    ws = workspace.id
    service.put_model(engine, ws, MODEL)
    domains = [f"k{i}.com" for i in range(5)]
    ids = push_accounts(workspace.api, *domains)
    for d in domains:
        signals(engine, ws, d, "website", "page_view", 0, 1)
        signals(engine, ws, d, "g2", "pricing", 0)

    def die(done: int, total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt  # as a worker stopped mid-run

    with pytest.raises(KeyboardInterrupt):
        pipeline.run_scoring(engine, ws, on_progress=die, batch_size=2)
    rows = sorted((row(engine, ws, i) for i in ids), key=lambda r: r["rtp_account_score"])
    new = (round((19 + 60) / 4, 2), 19.0, 0.0, 20.0, 0.0)
    old = (0.0,) * 5
    # each account is either fully new or fully old; the first batch of two got written
    assert [scores(r) for r in rows] == [old, old, old, new, new]
    runs = service.list_runs(engine, ws)
    assert runs[0]["status"] == "failed" and runs[0]["scored"] == 2
    # the next incremental run has no finished run to start from, so it scores everything
    s = pipeline.run_scoring(engine, ws, full=False)
    assert s.changed == 3
    assert all(scores(row(engine, ws, i)) == new for i in ids)


def test_stage_step_is_called_per_batch_and_a_stage_change_is_a_change(
    engine: Any, scored: tuple[Workspace, list[str]]
) -> None:
    workspace, (a, b, c) = scored
    calls: list[int] = []

    def stage(
        conn: Any, ws: int, ids: list[str], new: dict[str, dict[str, float]]
    ) -> dict[str, str | None]:
        assert ws == workspace.id and set(new) == set(ids)
        calls.append(len(ids))
        return {i: ("Hot" if new[i]["rtp_account_score"] >= 30 else "Cold") for i in ids}

    s = pipeline.run_scoring(engine, workspace.id, stage_step=stage, batch_size=2)
    assert calls == [2, 1] and s.changed == 3  # gamma: scores equal, stage new
    assert [row(engine, workspace.id, i)["rtp_journey_stage"] for i in (a, b, c)] == [
        "Cold", "Hot", "Cold",
    ]  # fmt: skip
    assert pipeline.run_scoring(engine, workspace.id, stage_step=stage).changed == 0


def test_a_new_model_version_is_recorded_without_a_stamp(
    engine: Any, scored: tuple[Workspace, list[str]]
) -> None:
    workspace, (_, _, c) = scored
    pipeline.run_scoring(engine, workspace.id)
    before = row(engine, workspace.id, c)
    v = service.put_model(engine, workspace.id, MODEL)["version"]
    assert v == 2
    s = pipeline.run_scoring(engine, workspace.id)
    assert s.changed == 0 and s.model_version == 2
    after = row(engine, workspace.id, c)
    assert after["score_model_version"] == 2
    assert after["changed_at"] == before["changed_at"]


def test_other_workspaces_are_untouched(
    engine: Any, scored: tuple[Workspace, list[str]], other: Workspace
) -> None:
    workspace, _ = scored
    (o,) = push_accounts(other.api, "alpha.com")
    signals(engine, other.id, "alpha.com", "website", "page_view", 0)
    before = row(engine, other.id, o)
    s = pipeline.run_scoring(engine, workspace.id)
    assert s.scored == 3
    assert row(engine, other.id, o) == before
    # and the other workspace scores with its own (default) model: 1 view = 1 point of 100
    pipeline.run_scoring(engine, other.id)
    assert row(engine, other.id, o)["rtp_website_intent_score"] == 1.0
    with read_tx(engine) as conn:
        n = conn.execute(
            text("SELECT count(*) FROM scoring_runs WHERE workspace_id = :ws"), {"ws": other.id}
        ).scalar_one()
    assert n == 1


def test_deals_and_activities_make_accounts_touched(engine: Any, workspace: Workspace) -> None:
    api = workspace.api
    r = api.post(
        "/accounts",
        json={"accounts": [
            {"domain": "deal.com", "name": "Deal", "externalId": "CRM-1"},
            {"domain": "call.com", "name": "Call"},
            {"domain": "quiet.com", "name": "Quiet"},
        ]},
    )  # fmt: skip
    deal_aid, call_aid, _ = [x["rtp_aid"] for x in r.json()["data"]["results"]]
    pipeline.run_scoring(engine, workspace.id)
    with read_tx(engine) as conn:
        since = conn.execute(
            text("SELECT max(watermark) FROM scoring_runs WHERE workspace_id = :ws"),
            {"ws": workspace.id},
        ).scalar_one()
        assert repo.touched_since(conn, workspace.id, since) == []
    deal = {"externalDealId": "D-1", "name": "Big", "associatedAccounts": [{"externalId": "CRM-1"}]}
    assert api.post("/deals", json={"deals": [deal]}).status_code == 200
    call = {
        "externalActivityId": "A-1", "activityType": "call", "occurredAt": "2026-04-01T10:00:00Z",
        "domain": "call.com", "ownerEmail": "owner@example.com",
        "contacts": [{"email": "jane@call.com"}],
    }  # fmt: skip
    assert api.post("/sales-activities", json={"activities": [call]}).status_code == 200
    with read_tx(engine) as conn:
        assert repo.touched_since(conn, workspace.id, since) == sorted([deal_aid, call_aid])
