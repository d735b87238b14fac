"""Journey stages: the default list, editing it (every problem named), placing accounts
bottom-up with the first rule that holds, and recording every change."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from intently.kit.db import read_clock, read_tx, write_tx
from intently.kit.timefmt import US_PER_DAY, now_us
from intently.signals.store import SignalIn, store
from intently.stages.schemas import DEFAULT_STAGES
from intently.stages.service import apply_stages
from tests.support.api import Api, Workspace
from tests.support.envelope import business, validation_data

NAMES = ["Customer", "Opportunity", "Decision", "Consideration", "Engaged", "Aware", "Unaware"]


def account(api: Api, domain: str, external_id: str | None = None) -> str:
    item: dict[str, Any] = {"domain": domain, "name": domain}
    if external_id:
        item["externalId"] = external_id
    r = api.post("/accounts", json={"accounts": [item]})
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["results"][0]["rtp_aid"])


def deal(api: Api, ext: str, domain: str, label: str) -> None:
    body = {"deals": [{"externalDealId": ext, "name": ext, "stageLabel": label,
                       "associatedAccounts": [{"domain": domain}]}]}  # fmt: skip
    assert api.post("/deals", json=body).status_code == 200


def signal(engine: Any, ws: int, domain: str, source: str, type_: str, days_ago: int = 1,
           topic: str = "", key: str | None = None) -> None:  # fmt: skip
    at = now_us() - days_ago * US_PER_DAY
    with write_tx(engine) as conn:
        store(conn, ws, [SignalIn(domain, source, type_, at, key or f"{domain}{type_}{days_ago}",
                                  topic=topic)])  # fmt: skip


def place(engine: Any, ws: int, aids: list[str]) -> list[str]:
    with write_tx(engine) as conn:
        return apply_stages(conn, ws, aids, cause="test")


def stage_of(api: Api, aid: str) -> str | None:
    return api.get(f"/accounts/{aid}").json()["data"]["rtp_journey_stage"]


# ---- the stage list ---------------------------------------------------------------------------


def test_a_new_workspace_has_the_documented_default(api: Api) -> None:
    r = api.get("/stages")
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["version"] == 0
    assert [s["name"] for s in data["stages"]] == NAMES
    assert "rule" not in data["stages"][-1]
    assert data["dealStages"] == {"won": ["closed won", "won"], "lost": ["closed lost", "lost"]}


def test_saving_a_stage_list_makes_a_new_version(api: Api) -> None:
    doc = {"stages": [
        {"name": "Buying", "rule": {"field": "rtp_account_score", "op": "gte", "value": 70}},
        {"name": "Browsing"},
    ]}  # fmt: skip
    r = api.put("/stages", json=doc)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["version"] == 1
    assert api.put("/stages", json=doc).json()["data"]["version"] == 2
    got = api.get("/stages").json()["data"]
    assert [s["name"] for s in got["stages"]] == ["Buying", "Browsing"]


def test_every_problem_of_a_stage_list_is_named(api: Api) -> None:
    doc = {
        "stages": [
            {"name": "A", "rule": {"field": "no_such_field", "op": "eq", "value": 1}},
            {"name": "a", "rule": {"deal": {"status": "open"}}},
            {"name": "", "rule": {"deal": {"status": "won"}}},
            {"name": "C"},
            {"name": "Last", "rule": {"deal": {"status": "won"}}},
        ],
        "dealStages": {"won": "closed won"},
        "colour": "red",
    }
    errors = validation_data(api.put("/stages", json=doc))
    paths = {e["path"] for e in errors}
    assert {"stages.0.rule.field", "stages.1.name", "stages.2.name", "stages.3.rule",
            "stages.4.rule", "dealStages.won", "colour"} <= paths  # fmt: skip
    dup = next(e for e in errors if e["path"] == "stages.1.name")
    assert dup["constraints"] == {"isUnique": "name 'a' is used by an earlier stage"}
    assert api.get("/stages").json()["data"]["version"] == 0  # nothing saved


@pytest.mark.parametrize("body", [{"stages": []}, {"stages": "x"}, {}])
def test_a_stage_list_needs_stages(api: Api, body: dict[str, Any]) -> None:
    errors = validation_data(api.put("/stages", json=body))
    assert errors[0]["path"] == "stages"


def test_stage_lists_belong_to_one_workspace(workspace: Workspace, other: Workspace) -> None:
    doc = {"stages": [{"name": "Only"}]}
    assert workspace.api.put("/stages", json=doc).status_code == 200
    assert other.api.get("/stages").json()["data"]["version"] == 0


# ---- placing accounts ---------------------------------------------------------------------------


def test_accounts_are_placed_by_the_first_rule_that_holds(
    api: Api, engine: Any, workspace: Workspace
) -> None:
    ws = workspace.id
    won, open_, g2, viewer, quiet = (
        account(api, "won.io"), account(api, "open.io"), account(api, "g2.io"),
        account(api, "viewer.io"), account(api, "quiet.io"),
    )  # fmt: skip
    deal(api, "D-won", "won.io", "Closed Won")
    deal(api, "D-open", "open.io", "Negotiation")
    deal(api, "D-open2", "won.io", "Negotiation")  # won outranks open
    signal(engine, ws, "g2.io", "g2", "pricing", days_ago=3)
    for d in range(3):
        signal(engine, ws, "viewer.io", "website", "page_view", days_ago=d + 1)
    changed = place(engine, ws, [won, open_, g2, viewer, quiet])
    assert len(changed) == 5
    assert [stage_of(api, a) for a in (won, open_, g2, viewer, quiet)] == [
        "Customer", "Opportunity", "Decision", "Engaged", "Unaware",
    ]  # fmt: skip


def test_old_signals_fall_out_of_their_window(api: Api, engine: Any, workspace: Workspace) -> None:
    aid = account(api, "stale.io")
    signal(engine, workspace.id, "stale.io", "g2", "pricing", days_ago=45)
    place(engine, workspace.id, [aid])
    # G2 research counts for Decision and Consideration within 30 days; 45 days old it
    # only makes the account Aware.
    assert stage_of(api, aid) == "Aware"


def test_every_change_is_recorded_and_a_rerun_changes_nothing(
    api: Api, engine: Any, workspace: Workspace
) -> None:
    ws = workspace.id
    aid = account(api, "moving.io")
    place(engine, ws, [aid])
    signal(engine, ws, "moving.io", "g2", "comparison", days_ago=2)
    assert place(engine, ws, [aid]) == [aid]
    with read_tx(engine) as conn:
        clock = read_clock(conn, ws)
    assert place(engine, ws, [aid]) == []  # same data: nothing written, clock unmoved
    with read_tx(engine) as conn:
        assert read_clock(conn, ws) == clock
    r = api.get(f"/accounts/{aid}/stage-changes")
    assert r.status_code == 200
    changes = r.json()["data"]
    assert [(c["from"], c["to"]) for c in changes] == [("Unaware", "Decision"), (None, "Unaware")]
    decision = api.get("/stages").json()["data"]["stages"][2]
    assert decision["name"] == "Decision" and changes[0]["rule"] == decision["rule"]
    assert changes[1]["rule"] is None  # the fallback has no rule
    assert changes[0]["cause"] == "test"


def test_a_stage_change_shows_in_delta_sync(api: Api, engine: Any, workspace: Workspace) -> None:
    aid = account(api, "synced.io")
    first = api.get("/accounts", params={"limit": 1000}).json()["data"]["syncTimestamp"]
    deal(api, "D-s", "synced.io", "Closed Won")
    place(engine, workspace.id, [aid])
    page = api.get("/accounts", params={"lastSync": first}).json()["data"]
    [item] = [x for x in page["data"] if x["rtp_aid"] == aid]
    assert item["rtp_journey_stage"] == "Customer"
    assert item["rtp_last_account_date"] is not None


def test_custom_deal_stage_labels(api: Api, engine: Any, workspace: Workspace) -> None:
    doc = copy.deepcopy(DEFAULT_STAGES)
    doc["dealStages"] = {"won": ["signed"], "lost": ["dead"]}
    assert api.put("/stages", json=doc).status_code == 200
    a1, a2 = account(api, "signed.io"), account(api, "dead.io")
    deal(api, "D-1", "signed.io", "Contract Signed")
    deal(api, "D-2", "dead.io", "Dead")
    place(engine, workspace.id, [a1, a2])
    assert stage_of(api, a1) == "Customer"
    assert stage_of(api, a2) == "Unaware"  # a lost deal is neither open nor won


def test_stage_changes_of_unknown_accounts(api: Api) -> None:
    business(api.get("/accounts/0123456789abcdef01234567/stage-changes"), 404,
             "Account '0123456789abcdef01234567' not found")  # fmt: skip
    business(api.get("/accounts/x/stage-changes"), 400, "Invalid rtp_aid format")


# ---- stages within scoring runs, and the history ------------------------------------------------


def test_a_scoring_run_places_accounts_and_keeps_their_history(
    api: Api, engine: Any, workspace: Workspace
) -> None:
    ws = workspace.id
    aid = account(api, "journey.io")
    r = api.post("/scoring/runs", json={"full": True})
    assert r.status_code == 200, r.text
    assert stage_of(api, aid) == "Unaware"
    signal(engine, ws, "journey.io", "g2", "pricing", days_ago=1)
    s = api.post("/scoring/runs", json={"full": False}).json()["data"]
    assert (s["kind"], s["changed"]) == ("incremental", 1)
    item = api.get(f"/accounts/{aid}").json()["data"]
    assert item["rtp_journey_stage"] == "Decision" and item["rtp_g2_intent_score"] > 0
    again = api.post("/scoring/runs", json={"full": True}).json()["data"]
    assert again["changed"] == 0  # same data: nothing written
    hist = api.get(f"/accounts/{aid}/history").json()["data"]
    today = datetime.now(UTC).date().isoformat()
    assert hist["days"] == [
        {"date": today, "score": item["rtp_account_score"], "stage": "Decision"}
    ]
    assert [(c["from"], c["to"], c["cause"]) for c in hist["stageChanges"]] == [
        ("Unaware", "Decision", "incremental"),
        (None, "Unaware", "full"),
    ]


def test_history_of_unknown_accounts(api: Api) -> None:
    business(api.get("/accounts/0123456789abcdef01234567/history"), 404,
             "Account '0123456789abcdef01234567' not found")  # fmt: skip


def test_the_score_explanation_names_the_stage_rule_and_the_surge(
    api: Api, engine: Any, workspace: Workspace
) -> None:
    ws = workspace.id
    aid = account(api, "explained.io")
    for d in (1, 2, 3):
        signal(engine, ws, "explained.io", "website", "page_view", days_ago=d)
    signal(engine, ws, "explained.io", "g2", "comparison", days_ago=2)
    assert api.post("/scoring/runs", json={"full": True}).status_code == 200
    data = api.get(f"/accounts/{aid}/score").json()["data"]
    decision = api.get("/stages").json()["data"]["stages"][2]
    assert data["stage"]["name"] == "Decision" and data["stage"]["rule"] == decision["rule"]
    surge = {s["source"]: s for s in data["surge"]}
    # three page views this week against none in the four before: a surge
    assert surge["website"] == {"source": "website", "recentDays": 7, "recent": 3,
                                "baselineDays": 28, "baseline": 0, "surging": True}  # fmt: skip
    assert surge["g2"]["surging"] is False  # one signal is below the minimum of three


def test_a_model_with_longer_surge_windows_changes_what_surges(
    api: Api, engine: Any, workspace: Workspace
) -> None:
    ws = workspace.id
    aid = account(api, "windows.io")
    for d in (1, 9, 10):  # two of them outside a 7-day window, inside a 14-day one
        signal(engine, ws, "windows.io", "website", "page_view", days_ago=d)
    model = api.get("/scoring/model").json()["data"]["model"]
    assert api.get(f"/accounts/{aid}/score").json()["data"]["surge"][0]["surging"] is False
    model["surge"] = {"recent_days": 14, "baseline_days": 28}
    assert api.put("/scoring/model", json=model).status_code == 200
    assert api.get(f"/accounts/{aid}/score").json()["data"]["surge"][0]["surging"] is True
