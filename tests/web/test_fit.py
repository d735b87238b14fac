"""The ICP fit editor on the scoring pages: a JSON editor with a dry run before saving;
admins only."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from tests.support.api import Api
from tests.support.dashboard import Dashboard
from tests.support.fit import MODEL, set_profile
from tests.support.scoring import push_accounts
from tests.web.test_scoring import form_of


def stored(api: Api) -> dict[str, Any]:
    return dict(api.get("/fit/model").json()["data"])


def test_a_dry_run_changes_nothing_and_save_makes_a_version(admin: Dashboard, engine: Any) -> None:
    api = admin.ws.api
    big, small = push_accounts(api, "big.example", "small.example")
    set_profile(engine, admin.ws.id, big, employee_count=800, annual_revenue=5e7)
    page = admin.get("/app/scoring/fit")
    assert page.status_code == 200 and "(the default)" in page.text
    assert "Employees 200-4,999" in page.text
    form = form_of(page.text, "/app/scoring/fit")
    assert json.loads(form["model"]) == stored(api)["model"] and form["version"] == "0"

    dry = admin.htmx("POST", "/app/scoring/fit/dry-run", data={"model": json.dumps(MODEL)})
    assert dry.status_code == 200, dry.text
    assert "Nothing was saved" in dry.text
    # big: default 60 (B4) -> 70 (B3); small: 0 (D4) -> 0 (C3): MODEL has 3 intent bands
    assert re.search(r"Fit scores that change</dt><dd><strong>1</strong>", dry.text), dry.text
    assert re.search(r"Accounts that change grade</dt><dd><strong>2</strong>", dry.text)
    assert re.search(r"<td>D4</td><td>C3</td><td class=\"num\">1</td>", dry.text), dry.text
    assert re.search(r"<td>B4</td><td>B3</td><td class=\"num\">1</td>", dry.text), dry.text
    chart = re.search(r'<div hidden class="chart-config" id="[^"]+">(.*?)</div>', dry.text, re.S)
    assert chart and sum(json.loads(chart.group(1))["data"]["datasets"][1]["data"]) == 2
    assert stored(api)["version"] == 0

    saved = admin.post("/app/scoring/fit", {"model": json.dumps(MODEL), "version": "0"})
    assert saved.status_code == 303 and saved.headers["location"] == "/app/scoring/fit?saved=1"
    assert stored(api)["version"] == 1 and stored(api)["model"] == MODEL
    shown = admin.get(saved.headers["location"])
    assert "Saved as version 1" in shown.text and "(version 1)" in shown.text
    assert small  # the run after the save grades with the new model
    assert api.post("/scoring/runs", json={"full": True}).status_code == 200
    x = api.get(f"/accounts/{small}/score").json()["data"]["fit"]
    assert x["modelVersion"] == 1 and x["grade"]["fit"] == "C"


def test_an_invalid_model_names_every_problem_with_its_value(admin: Dashboard) -> None:
    bad = copy.deepcopy(MODEL)
    bad["criteria"][0]["rule"] = {"field": "rtp_account_score", "op": "gte", "value": 50}
    bad["criteria"][1]["points"] = 500
    for path in ("/app/scoring/fit/dry-run", "/app/scoring/fit"):
        data = {"model": json.dumps(bad), "version": "0"}
        r = admin.htmx("POST", path, data=data) if "dry" in path else admin.post(path, data)
        assert r.status_code == 400, r.text
        assert "criteria.0.rule.field" in r.text and "reads the field rtp_account_score" in r.text
        assert "criteria.1.points" in r.text and "500" in r.text
    r = admin.post("/app/scoring/fit", {"model": "{not json", "version": "0"})
    assert r.status_code == 400 and "model is not valid JSON" in r.text
    assert "{not json" in r.text  # the text is kept in the editor
    assert stored(admin.ws.api)["version"] == 0


def test_a_save_over_a_newer_version_is_refused(admin: Dashboard) -> None:
    api = admin.ws.api
    assert api.put("/fit/model", json=MODEL).status_code == 200  # someone else: v1
    r = admin.post("/app/scoring/fit", {"model": json.dumps(MODEL), "version": "0"})
    assert r.status_code == 409 and "changed to 1 since this editor was opened" in r.text
    assert stored(api)["version"] == 1


def test_members_get_403(member: Dashboard) -> None:
    assert member.get("/app/scoring/fit").status_code == 403
    for path in ("/app/scoring/fit", "/app/scoring/fit/dry-run"):
        r = member.post(path, {"model": json.dumps(MODEL), "version": "0"})
        assert r.status_code == 403, path
    assert stored(member.ws.api)["version"] == 0


def test_the_accounts_list_shows_and_filters_by_fit_and_grade(
    admin: Dashboard, engine: Any
) -> None:
    api = admin.ws.api
    ideal, mid, bare = push_accounts(api, "ideal.example", "mid.example", "bare.example")
    set_profile(engine, admin.ws.id, ideal, employee_count=800, annual_revenue=5e7,
                industry="Software", country="US")  # fmt: skip
    set_profile(engine, admin.ws.id, mid, employee_count=120)
    assert api.post("/scoring/runs", json={"full": True}).status_code == 200
    # the default model: ideal 85 (A4), mid 20 (D4), bare 0 (D4)

    def listed(query: str) -> list[str]:
        r = admin.get(f"/app/accounts?{query}")
        assert r.status_code == 200, r.text
        return re.findall(r'<a href="/app/accounts/([0-9a-z]+)">', r.text)

    assert sorted(listed("")) == sorted([ideal, mid, bare])
    page = admin.get("/app/accounts").text
    assert '<span class="chip" title="fit 85">A4</span>' in page
    assert listed("grade=A4") == [ideal]
    assert listed("grade=A") == [ideal]
    assert sorted(listed("grade=D")) == sorted([mid, bare])
    assert listed("grade=B") == []
    assert listed("fit_min=10") == [ideal, mid] or listed("fit_min=10") == [mid, ideal]
    assert listed("fit_min=50&grade=D4") == []
    r = admin.get("/app/accounts?fit_min=101")
    assert r.status_code == 400 and "fit_min should be between 0 and 100" in r.text
