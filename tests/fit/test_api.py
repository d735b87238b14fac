"""The ICP fit model through HTTP: versions, validation naming every problem, fit scores and
grades written by scoring runs, the dry run, the explanation, and tenancy."""

from __future__ import annotations

import copy
from typing import Any

from intently.fit.schemas import default_fit_model
from tests.support.api import Workspace
from tests.support.envelope import validation_data
from tests.support.fit import MODEL, clear_fit, fit_row, set_profile
from tests.support.scoring import push_accounts, signals


def run(workspace: Workspace) -> dict[str, Any]:
    r = workspace.api.post("/scoring/runs", json={"full": True})
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def test_the_model_starts_as_the_default_and_puts_make_versions(workspace: Workspace) -> None:
    api = workspace.api
    data = api.get("/fit/model").json()["data"]
    assert data["version"] == 0 and data["isDefault"] is True
    assert data["model"] == default_fit_model()
    r = api.put("/fit/model", json=MODEL)
    assert r.status_code == 200, r.text
    v1 = r.json()["data"]
    assert v1["version"] == 1 and v1["isDefault"] is False and v1["model"] == MODEL
    # bands left out: the default bands
    r = api.put("/fit/model", json={"criteria": MODEL["criteria"][:1]})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["model"]["bands"] == default_fit_model()["bands"]
    now = workspace.crm.get("/fit/model").json()["data"]  # the CRM mount serves it too
    assert now["version"] == 2 and len(now["model"]["criteria"]) == 1


def test_rules_reading_intent_are_refused_naming_the_criterion(workspace: Workspace) -> None:
    bad = copy.deepcopy(MODEL)
    bad["criteria"][0]["rule"] = {"field": "rtp_account_score", "op": "gte", "value": 50}
    bad["criteria"][1]["rule"] = {
        "all": [
            {"field": "annualRevenue", "op": "gte", "value": 1},
            {"not": {"signal": {"source": "g2", "type": "pricing"}, "window_days": 30,
                     "op": "gte", "value": 1}},
        ]
    }  # fmt: skip
    bad["criteria"][2]["rule"] = {"any": [{"field": "rtp_grade", "op": "eq", "value": "A1"},
                                          {"deal": {"status": "won"}}]}  # fmt: skip
    bad["criteria"][3]["rule"] = {"field": "rtp_journey_stage", "op": "eq", "value": "Aware"}
    errors = {e["path"]: e["constraints"] for e in validation_data(
        workspace.api.put("/fit/model", json=bad))}  # fmt: skip
    assert set(errors) == {
        "criteria.0.rule.field",
        "criteria.1.rule.all.1.not",
        "criteria.2.rule.any.0.field",
        "criteria.2.rule.any.1",
        "criteria.3.rule.field",
    }
    text = errors["criteria.0.rule.field"]["isFitCondition"]
    assert "criteria.0.rule.field reads the field rtp_account_score" in text
    assert "a signal condition" in errors["criteria.1.rule.all.1.not"]["isFitCondition"]
    assert "a deal condition" in errors["criteria.2.rule.any.1"]["isFitCondition"]
    assert workspace.api.get("/fit/model").json()["data"]["version"] == 0  # nothing stored


def test_an_invalid_model_names_every_problem(workspace: Workspace) -> None:
    api = workspace.api
    bad = copy.deepcopy(MODEL)
    bad["criteria"][0]["points"] = 101
    bad["criteria"][1]["name"] = "Mid-market"  # twice
    bad["criteria"][2]["rule"] = {"field": "industry", "op": "gte", "value": "S"}
    bad["criteria"][3]["rule"] = {"field": "customFields.NOPE_C", "op": "eq", "value": "x"}
    bad["bands"]["fit"] = [
        {"grade": "A", "min": 40}, {"grade": "B", "min": 60}, {"grade": "A", "min": 10},
    ]  # fmt: skip
    bad["bands"]["intent"] = [{"grade": "1 2", "min": 50}, {"grade": "2", "min": 5}]
    errors = {e["path"]: e["constraints"] for e in validation_data(api.put("/fit/model", json=bad))}
    assert set(errors) == {
        "criteria.0.points",
        "criteria.1.name",
        "criteria.2.rule.op",
        "criteria.3.rule.field",
        "bands.fit.1.min",
        "bands.fit.2.grade",
        "bands.fit.2.min",
        "bands.intent.0.grade",
        "bands.intent.1.min",
    }
    assert errors["criteria.0.points"] == {"max": "points must not be greater than 100"}
    assert "already criterion 0" in errors["criteria.1.name"]["isUnique"]
    assert "must be below the band before it (40)" in errors["bands.fit.1.min"]["isDescending"]
    assert "already band 0" in errors["bands.fit.2.grade"]["isUnique"]
    assert "must be 0" in errors["bands.intent.1.min"]["isZero"]
    many = {"criteria": [copy.deepcopy(MODEL["criteria"][0]) | {"name": f"c{i}"}
                         for i in range(51)]}  # fmt: skip
    errors = {
        e["path"]: e["constraints"] for e in validation_data(api.put("/fit/model", json=many))
    }
    assert "arrayMaxSize" in errors["criteria"]
    for body in ([], {"criteria": "x"}, {"criteria": [{"name": "x", "points": 1}]}):
        assert api.put("/fit/model", json=body).status_code == 400
    assert api.get("/fit/model").json()["data"]["version"] == 0


def test_a_custom_field_criterion_is_typed_by_the_workspace(workspace: Workspace) -> None:
    api = workspace.api
    r = api.post("/accounts/custom-field", json={"label": "Tier", "labelType": "number"})
    assert r.status_code == 201, r.text
    model = {
        "criteria": [
            {
                "name": "Tier 1",
                "points": 60,
                "rule": {"field": "customFields.TIER_C", "op": "lte", "value": 1},
            }
        ]
    }
    r = api.put("/fit/model", json=model)
    assert r.status_code == 200, r.text
    r = api.post("/accounts", json={"accounts": [
        {"domain": "tier1.com", "name": "T1", "customFields": {"TIER_C": 1}},
        {"domain": "tier3.com", "name": "T3", "customFields": {"TIER_C": 3}},
    ]})  # fmt: skip
    assert r.status_code == 200, r.text
    one, three = (x["rtp_aid"] for x in r.json()["data"]["results"])
    run(workspace)
    assert api.get(f"/accounts/{one}/score").json()["data"]["fit"]["score"] == 60
    assert api.get(f"/accounts/{three}/score").json()["data"]["fit"]["score"] == 0
    # a text comparison on a number field is refused, with the path
    model["criteria"][0]["rule"] = {"field": "customFields.TIER_C", "op": "starts_with",
                                    "value": "1"}  # fmt: skip
    (err,) = validation_data(api.put("/fit/model", json=model))
    assert err["path"] == "criteria.0.rule.op"


def test_runs_write_the_fit_score_and_grade(engine: Any, workspace: Workspace) -> None:
    api, ws = workspace.api, workspace.id
    assert api.put("/fit/model", json=MODEL).status_code == 200
    ideal, mid, bare = push_accounts(api, "ideal.com", "mid.com", "bare.com")
    r = api.post("/accounts", json={"accounts": [
        {"domain": "rival.com", "name": "rival.com", "tags": ["competitor"]}]})  # fmt: skip
    assert r.status_code == 200, r.text
    rival = r.json()["data"]["results"][0]["rtp_aid"]
    set_profile(engine, ws, ideal, employee_count=800, annual_revenue=5e7, industry="Software")
    set_profile(engine, ws, mid, employee_count=150, annual_revenue=2e7)
    set_profile(engine, ws, rival, employee_count=800)
    # ideal shows strong intent: G2 pricing views today
    signals(engine, ws, "ideal.com", "g2", "pricing", 0, 0, 0)
    before = {a: fit_row(engine, ws, a) for a in (ideal, mid, bare, rival)}
    # graded when pushed, before their profiles were written behind the API's back
    assert all(b["rtp_fit_score"] == 0 and b["rtp_grade"] == "C3" for b in before.values())
    summary = run(workspace)
    rows = {a: fit_row(engine, ws, a) for a in (ideal, mid, bare, rival)}
    # 40 + 30 + 20 = 90 (A); 30 (C); nothing (C); 40 - 50 held at 0 (C)
    assert [rows[a]["rtp_fit_score"] for a in (ideal, mid, bare, rival)] == [90, 30, 0, 0]
    intent = rows[ideal]["rtp_account_score"]
    assert intent >= 10
    assert rows[ideal]["rtp_grade"] == ("A1" if intent >= 50 else "A2")
    assert [rows[a]["rtp_grade"] for a in (mid, bare, rival)] == ["C3", "C3", "C3"]
    assert summary["changed"] == 4  # every account's first stage
    assert run(workspace)["changed"] == 0  # nothing moved

    # a new model applies from the next run: a change of fit or grade is a change
    model = copy.deepcopy(MODEL)
    model["criteria"][1]["points"] = 50  # revenue 10M+ now 50: mid 50 (B), ideal 100 (A)
    assert api.put("/fit/model", json=model).status_code == 200
    assert fit_row(engine, ws, mid)["rtp_fit_score"] == 30  # not before the run
    assert run(workspace)["changed"] == 2
    after = {a: fit_row(engine, ws, a) for a in (ideal, mid, bare, rival)}
    assert after[mid]["rtp_fit_score"] == 50 and after[mid]["rtp_grade"] == "B3"
    assert after[ideal]["rtp_fit_score"] == 100
    assert after[mid]["changed_at"] > rows[mid]["changed_at"]
    assert after[bare]["changed_at"] == rows[bare]["changed_at"]
    # a profile change moves the fit on the next run too
    set_profile(engine, ws, bare, employee_count=300)
    assert run(workspace)["changed"] == 1
    assert fit_row(engine, ws, bare)["rtp_fit_score"] == 40


def test_an_account_never_graded_is_graded_by_the_next_run_as_a_change(
    engine: Any, workspace: Workspace
) -> None:
    """Accounts from before fit existed (the upgrade) get their fit on the next run, as a
    change: their items gain a fit score and grade, which a delta sync must see."""
    ws = workspace.id
    scored, quiet = push_accounts(workspace.api, "scored.com", "quiet.com")
    set_profile(engine, ws, quiet, employee_count=300)
    run(workspace)
    clear_fit(engine, ws)
    signals(engine, ws, "scored.com", "g2", "pricing", 0)
    before = {a: fit_row(engine, ws, a) for a in (scored, quiet)}
    assert run(workspace)["changed"] == 2
    after = {a: fit_row(engine, ws, a) for a in (scored, quiet)}
    assert after[quiet]["rtp_fit_score"] == 35 and after[quiet]["rtp_grade"] == "C4"
    assert after[quiet]["changed_at"] > before[quiet]["changed_at"]
    assert after[scored]["rtp_grade"] is not None
    assert after[scored]["changed_at"] > before[scored]["changed_at"]
    assert run(workspace)["changed"] == 0


def test_a_pushed_account_is_graded_at_once(workspace: Workspace) -> None:
    """A new account's first item carries its fit and grade: no run has to fill them in."""
    api = workspace.api
    r = api.post("/accounts", json={"accounts": [{"domain": "new-fit.com", "name": "N"}]})
    assert r.status_code == 200, r.text
    item = api.get(f"/accounts/{r.json()['data']['results'][0]['rtp_aid']}").json()["data"]
    assert (item["rtp_fit_score"], item["rtp_grade"]) == (0.0, "D4")
