"""The ICP fit model through HTTP: versions, validation naming every problem, fit scores and
grades written by scoring runs, the dry run, the explanation, and tenancy."""

from __future__ import annotations

import copy
from typing import Any

import pytest

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
    assert all(b["rtp_fit_score"] is None and b["rtp_grade"] is None for b in before.values())
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


def test_a_first_fit_is_filled_in_without_a_change_stamp(engine: Any, workspace: Workspace) -> None:
    """Accounts scored before fit existed (the upgrade) get their fit on the next run, but
    are not marked changed by that alone: the first run would otherwise mark them all."""
    ws = workspace.id
    scored, quiet = push_accounts(workspace.api, "scored.com", "quiet.com")
    set_profile(engine, ws, quiet, employee_count=300)
    run(workspace)
    clear_fit(engine, ws)
    signals(engine, ws, "scored.com", "g2", "pricing", 0)
    before = {a: fit_row(engine, ws, a) for a in (scored, quiet)}
    assert run(workspace)["changed"] == 1  # scored's scores moved, quiet only got its fit
    after = {a: fit_row(engine, ws, a) for a in (scored, quiet)}
    assert after[quiet]["rtp_fit_score"] == 35 and after[quiet]["rtp_grade"] == "C4"
    assert after[quiet]["changed_at"] == before[quiet]["changed_at"]
    assert after[scored]["rtp_grade"] is not None
    assert after[scored]["changed_at"] > before[scored]["changed_at"]
    assert run(workspace)["changed"] == 0


def test_the_default_model_gives_no_profile_zero(engine: Any, workspace: Workspace) -> None:
    ws = workspace.id
    bare, full = push_accounts(workspace.api, "bare.com", "full.com")
    set_profile(engine, ws, full, employee_count=1200, annual_revenue=1.5e8,
                industry="Computer Software", country="DE")  # fmt: skip
    run(workspace)
    assert fit_row(engine, ws, bare)["rtp_fit_score"] == 0
    assert fit_row(engine, ws, bare)["rtp_grade"] == "D4"
    # 35 (size) + 25 (revenue) + 10 (industry known) + 10 (software) + 5 (country) = 85
    assert fit_row(engine, ws, full)["rtp_fit_score"] == 85
    assert fit_row(engine, ws, full)["rtp_grade"] == "A4"


def test_the_explanation_shows_the_fit_and_adds_up(engine: Any, workspace: Workspace) -> None:
    api, ws = workspace.api, workspace.id
    assert api.put("/fit/model", json=MODEL).status_code == 200
    (aid,) = push_accounts(api, "explained.com")
    set_profile(engine, ws, aid, employee_count=800, industry="Software")
    run(workspace)
    x = api.get(f"/accounts/{aid}/score").json()["data"]
    fit = x["fit"]
    assert fit["modelVersion"] == 1
    by = {c["name"]: c for c in fit["criteria"]}
    assert [c["name"] for c in fit["criteria"]] == [c["name"] for c in MODEL["criteria"]]
    assert by["Mid-market"]["matched"] is True and by["Mid-market"]["gave"] == 40
    assert by["Revenue 10M+"]["matched"] is False and by["Revenue 10M+"]["gave"] == 0
    assert by["Software"]["gave"] == 20 and by["Competitor"]["matched"] is False
    assert fit["total"] == sum(c["gave"] for c in fit["criteria"]) == 60
    assert fit["score"] == fit["stored"]["rtp_fit_score"] == 60
    grade = fit["grade"]
    assert grade["fit"] == "B" and grade["grade"] == fit["stored"]["rtp_grade"]
    assert grade["grade"] == grade["fit"] + grade["intent"]
    assert grade["intentScore"] == x["scores"]["rtp_account_score"]
    assert grade["bands"] == MODEL["bands"]


def test_a_dry_run_shows_the_change_and_writes_nothing(engine: Any, workspace: Workspace) -> None:
    api, ws = workspace.api, workspace.id
    assert api.put("/fit/model", json=MODEL).status_code == 200
    ids = push_accounts(api, "a.com", "b.com", "c.com", "d.com")
    for aid in ids[:3]:
        set_profile(engine, ws, aid, employee_count=800)
    run(workspace)
    stored = {a: fit_row(engine, ws, a) for a in ids}
    proposal = copy.deepcopy(MODEL)
    proposal["criteria"][0]["points"] = 85  # the three mid-market accounts go from B to A
    r = api.post("/fit/dry-run", json={"model": proposal})
    assert r.status_code == 200, r.text
    d = r.json()["data"]
    assert d["modelVersion"] == 1 and d["accounts"] == 4 and d["fitChanged"] == 3
    assert d["gradeMoves"] == [{"from": "B3", "to": "A3", "accounts": 3}]
    assert d["unmoved"] == 1
    assert d["fitBefore"]["mean"] == 30 and d["fitAfter"]["mean"] == pytest.approx(63.75)
    assert {b["from"]: b["accounts"] for b in d["fitAfter"]["buckets"]}[80] == 3
    assert {a: fit_row(engine, ws, a) for a in ids} == stored
    assert api.get("/fit/model").json()["data"]["version"] == 1
    bad = copy.deepcopy(proposal)
    bad["criteria"][0]["rule"] = {"field": "rtp_fit_score", "op": "gte", "value": 1}
    (err,) = validation_data(api.post("/fit/dry-run", json={"model": bad}))
    assert err["path"] == "criteria.0.rule.field"
    assert api.post("/fit/dry-run", json={"criteria": []}).status_code == 400


def test_a_workspace_never_sees_another_s_fit_model(
    engine: Any, workspace: Workspace, other: Workspace
) -> None:
    assert workspace.api.put("/fit/model", json=MODEL).status_code == 200
    assert other.api.get("/fit/model").json()["data"]["version"] == 0
    (aid,) = push_accounts(other.api, "theirs.com")
    set_profile(engine, other.id, aid, employee_count=800)
    run(other)
    assert fit_row(engine, other.id, aid)["rtp_fit_score"] == 35  # the default model's
    r = other.api.post("/fit/dry-run", json={"model": MODEL})
    assert r.json()["data"]["accounts"] == 1 and r.json()["data"]["modelVersion"] == 0
    assert workspace.api.get(f"/accounts/{aid}/score").status_code == 404
