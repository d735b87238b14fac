"""Scoring through HTTP: the model, runs, explanations that add up, and tenancy."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.support.api import Workspace
from tests.support.envelope import validation_data
from tests.support.scoring import MODEL, push_accounts, signals


def test_model_starts_as_the_default_and_puts_make_versions(workspace: Workspace) -> None:
    api = workspace.api
    r = api.get("/scoring/model")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["version"] == 0 and data["isDefault"] is True
    assert set(data["model"]["sources"]) == {"website", "bombora", "g2", "linkedin"}
    r = api.put("/scoring/model", json=MODEL)
    assert r.status_code == 200, r.text
    v1 = r.json()["data"]
    assert v1["version"] == 1 and v1["isDefault"] is False
    assert v1["model"]["sources"]["website"]["types"]["page_view"]["unit"] == "count"
    changed = copy.deepcopy(MODEL)
    changed["sources"]["website"]["weight"] = 2
    assert api.put("/scoring/model", json=changed).json()["data"]["version"] == 2
    now = api.get("/scoring/model").json()["data"]
    assert now["version"] == 2 and now["model"]["sources"]["website"]["weight"] == 2
    # the CRM mount serves it too
    assert workspace.crm.get("/scoring/model").json()["data"]["version"] == 2


def test_an_invalid_model_is_refused_with_every_problem(workspace: Workspace) -> None:
    bad = copy.deepcopy(MODEL)
    bad["sources"]["website"]["types"]["page_view"]["decay"] = {"kind": "cubic"}
    bad["sources"]["g2"]["types"]["pricingz"] = bad["sources"]["g2"]["types"]["pricing"]
    bad["sources"]["g2"]["weight"] = -3
    r = workspace.api.put("/scoring/model", json=bad)
    errors = {e["path"]: e["constraints"] for e in validation_data(r)}
    assert set(errors) == {
        "sources.website.types.page_view.decay.kind",
        "sources.website.types.page_view.decay.days",
        "sources.g2.types.pricingz",
        "sources.g2.weight",
    }
    assert errors["sources.g2.weight"] == {"min": "weight must not be less than 0"}
    # nothing was stored
    assert workspace.api.get("/scoring/model").json()["data"]["version"] == 0


def test_runs_are_started_and_listed(engine: Any, workspace: Workspace) -> None:
    api = workspace.api
    push_accounts(api, "one.com", "two.com")
    signals(engine, workspace.id, "one.com", "g2", "pricing", 0)
    r = api.post("/scoring/runs", json={"full": True})
    assert r.status_code == 200, r.text
    s = r.json()["data"]
    # both change: one by its scores, the other by its first stage (Unaware)
    assert (s["kind"], s["scored"], s["changed"], s["modelVersion"]) == ("full", 2, 2, 0)
    r = api.post("/scoring/runs", json={"full": False})
    assert r.json()["data"]["kind"] == "incremental" and r.json()["data"]["changed"] == 0
    runs = api.get("/scoring/runs").json()["data"]
    assert [x["kind"] for x in runs] == ["incremental", "full"]
    assert runs[1]["runId"] == s["runId"] and runs[1]["status"] == "done"
    assert runs[1]["scored"] == 2 and runs[1]["finishedAt"] is not None
    assert len(api.get("/scoring/runs?limit=1").json()["data"]) == 1
    errors = validation_data(api.post("/scoring/runs", json={"full": "yes"}))
    assert errors[0]["path"] == "full"
    assert validation_data(api.get("/scoring/runs?limit=0"))[0]["property"] == "limit"


def test_the_explanation_adds_up_to_the_score(engine: Any, workspace: Workspace) -> None:
    api = workspace.api
    model = copy.deepcopy(MODEL)
    model["sources"]["linkedin"] = {
        "weight": 2,
        "types": {
            "ad_click": {"increment": 3, "unit": "value", "cap": 40,
                         "decay": {"kind": "half_life", "days": 7}},
            "ad_impression": {"increment": 1, "unit": "value", "cap": 10, "enabled": False,
                              "decay": {"kind": "linear", "days": 30}},
        },
    }  # fmt: skip
    model["sources"]["website"]["types"]["form_submit"] = {
        "increment": 25, "cap": 40, "decay": {"kind": "step", "days": 7, "percent": 50},
    }  # fmt: skip
    assert api.put("/scoring/model", json=model).status_code == 200
    (aid,) = push_accounts(api, "explained.com")
    ws = workspace.id
    signals(engine, ws, "explained.com", "website", "page_view", 0, 3, 3, 9, 12)
    signals(engine, ws, "explained.com", "website", "form_submit", 8, 15)
    signals(engine, ws, "explained.com", "g2", "pricing", 1, 2, 6, 8)
    signals(engine, ws, "explained.com", "bombora", "surge", 4, value=72, topic="crm")
    signals(engine, ws, "explained.com", "bombora", "surge", 4, value=65, topic="erp")
    signals(engine, ws, "explained.com", "linkedin", "ad_click", 0, 7, value=4)
    signals(engine, ws, "explained.com", "linkedin", "ad_impression", 0, value=500)
    assert api.post("/scoring/runs", json={"full": True}).status_code == 200

    r = api.get(f"/accounts/{aid}/score")
    assert r.status_code == 200, r.text
    x = r.json()["data"]
    assert x["modelVersion"] == 1 and x["stored"]["modelVersion"] == 1
    by = {s["source"]: s for s in x["sources"]}
    web = {t["type"]: t for t in by["website"]["types"]}
    # page views: 5 in 10 days of linear decay, the one at 12 days is outside
    pv = web["page_view"]
    assert pv["count"] == 4 and pv["rawPoints"] == 40
    assert pv["decayedPoints"] == pytest.approx(10 * (1 + 0.7 + 0.7 + 0.1))
    assert pv["decayApplied"] == pytest.approx(40 - 25) and pv["points"] == pytest.approx(25)
    # forms: 25 at 8 days (x0.5) + 25 at 15 days (x0.25) = 18.75
    assert web["form_submit"]["points"] == pytest.approx(18.75)
    g2 = by["g2"]["types"][0]
    assert g2["count"] == 3 and g2["capHit"] is True and g2["points"] == 30
    bomb = by["bombora"]
    assert bomb["types"][0]["count"] == 2
    assert bomb["points"] == pytest.approx(0.5 * (72 + 65) * 0.6)
    assert by["bombora"]["countsInAccountScore"] is False  # weight 0
    li = {t["type"]: t for t in by["linkedin"]["types"]}
    assert li["ad_click"]["points"] == pytest.approx(3 * (4 + 4 * 0.5))
    assert li["ad_impression"]["enabled"] is False and li["ad_impression"]["points"] == 0
    assert li["ad_impression"]["count"] == 1  # seen, but it gives nothing

    # the numbers add up: types -> sources -> sub-scores -> the account score -> stored
    for s in x["sources"]:
        for t in s["types"]:
            assert t["rawPoints"] - t["decayApplied"] == pytest.approx(t["decayedPoints"])
            expect = min(t["cap"], t["decayedPoints"]) if t["enabled"] else 0
            assert t["points"] == pytest.approx(expect)
        assert s["points"] == pytest.approx(sum(t["points"] for t in s["types"]))
        assert s["subScore"] == pytest.approx(min(s["cap"], s["points"]) / s["cap"] * 100)
    counted = [s for s in x["sources"] if s["countsInAccountScore"]]
    total = sum(s["weight"] for s in counted)
    assert x["weightTotal"] == total
    account = sum(s["subScore"] * s["weight"] for s in counted) / total
    assert x["accountScore"] == pytest.approx(account)
    for s in x["sources"]:
        if s["column"] is not None:
            assert x["stored"][s["column"]] == round(s["subScore"], 2)
    assert x["stored"]["rtp_account_score"] == round(account, 2)
    assert x["scores"]["rtp_account_score"] == x["stored"]["rtp_account_score"]
    got = api.get(f"/accounts/{aid}").json()["data"]
    assert got["rtp_account_score"] == x["stored"]["rtp_account_score"]


def test_tenancy(engine: Any, workspace: Workspace, other: Workspace) -> None:
    (aid,) = push_accounts(workspace.api, "mine.com")
    signals(engine, workspace.id, "mine.com", "g2", "pricing", 0)
    assert workspace.api.put("/scoring/model", json=MODEL).json()["data"]["version"] == 1
    assert workspace.api.post("/scoring/runs", json={"full": True}).status_code == 200
    # the other workspace sees its own default model, no runs, and not the account
    assert other.api.get("/scoring/model").json()["data"]["version"] == 0
    assert other.api.get("/scoring/runs").json()["data"] == []
    r = other.api.get(f"/accounts/{aid}/score")
    assert r.status_code == 404 and r.json()["customMessage"] == f"Account '{aid}' not found"
    s = other.api.post("/scoring/runs", json={"full": True}).json()["data"]
    assert s["scored"] == 0
    assert workspace.api.get(f"/accounts/{aid}").json()["data"]["rtp_g2_intent_score"] == 20.0
    assert other.api.get("/accounts/not-an-id/score").status_code == 400
    assert workspace.api.with_key(None).get("/scoring/model").status_code == 401
