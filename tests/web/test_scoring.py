"""The scoring pages: overview and runs, the model and stage editors with their dry runs,
the backtest report; admins only."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy import text

from intently.kit.db import write_tx
from intently.kit.timefmt import US_PER_DAY
from tests.support.api import Api
from tests.support.dashboard import Dashboard
from tests.support.data import push_account

GET_ROUTES = [
    "/app/scoring",
    "/app/scoring/runs",
    "/app/scoring/model",
    "/app/scoring/stages",
    "/app/scoring/backtest",
]
POST_ROUTES = [
    "/app/scoring/runs",
    "/app/scoring/model",
    "/app/scoring/model/dry-run",
    "/app/scoring/stages",
    "/app/scoring/stages/dry-run",
    "/app/scoring/train",
    "/app/scoring/activate",
]


# ---- seeding through the API ----------------------------------------------------------------


def signals(api: Api, domain: str, source: str, type_: str, days_ago: list[int]) -> None:
    now = datetime.now(UTC)
    items = [
        {
            "domain": domain,
            "source": source,
            "type": type_,
            "occurredAt": (now - timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "id": f"{domain}-{type_}-{d}",
        }
        for d in days_ago
    ]
    r = api.post("/signals", json={"signals": items})
    assert r.status_code == 200, r.text


def score(api: Api) -> None:
    r = api.post("/scoring/runs", json={"full": True})
    assert r.status_code in (200, 201), r.text


def stored_model(api: Api) -> dict[str, Any]:
    return dict(api.get("/scoring/model").json()["data"])


def stored_stages(api: Api) -> dict[str, Any]:
    return dict(api.get("/stages").json()["data"])


# ---- a browser's view of a form ------------------------------------------------------------------


class _Forms(HTMLParser):
    """Every form on the page with the inputs and textareas a browser would submit
    (selects come from `selects`)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "fields": {}})
            return
        if not self.forms or "name" not in a:
            return
        fields = self.forms[-1]["fields"]
        if tag == "input":
            if a.get("type") == "checkbox":
                if "checked" in a:
                    fields[a["name"]] = a.get("value") or "on"
            else:
                fields[a["name"]] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a["name"]
            fields[a["name"]] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.forms[-1]["fields"][self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None


def form_of(page: str, action: str, editor: str | None = None) -> dict[str, str]:
    parser = _Forms()
    parser.feed(page)
    for f in parser.forms:
        if f["action"] == action and (editor is None or f["fields"].get("editor") == editor):
            return {k: v for k, v in f["fields"].items() if k != "csrf_token"}
    raise AssertionError(f"no form {action} {editor}")


def selects(page: str) -> dict[str, str]:
    """name -> the selected option of every select (the parser above is for inputs)."""
    out: dict[str, str] = {}
    for m in re.finditer(r'<select name="([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        options = re.findall(r"<option( selected)?>([^<]*)</option>", m.group(2))
        chosen = next((v for sel, v in options if sel), options[0][1])
        out[unescape(m.group(1))] = chosen
    return out


def fields_form(page: str) -> dict[str, str]:
    data = form_of(page, "/app/scoring/model", "fields")
    data.update(selects(page))
    return data


# ---- every page, empty and with data -------------------------------------------------------


def test_every_page_has_an_empty_state_in_an_empty_workspace(admin: Dashboard) -> None:
    page = admin.get("/app/scoring")
    assert page.status_code == 200, page.text
    assert "No scoring runs yet" in page.text
    assert "This workspace has no accounts yet" in page.text
    assert "default" in page.text and 'action="/app/scoring/runs"' in page.text
    assert "Nothing is queued" in page.text
    fragment = admin.get("/app/scoring/runs")
    assert fragment.status_code == 200 and "No scoring runs yet" in fragment.text
    assert "<html" not in fragment.text
    model = admin.get("/app/scoring/model")
    assert model.status_code == 200
    assert "documented default model (version 0)" in model.text
    assert 'name="sources.g2.types.pricing.increment" value="30"' in model.text
    stages = admin.get("/app/scoring/stages")
    assert stages.status_code == 200 and "(the default)" in stages.text
    assert "Customer" in stages.text and "Unaware" in stages.text
    backtest = admin.get("/app/scoring/backtest")
    assert backtest.status_code == 200 and "Pick a day to test" in backtest.text
    day = (datetime.now(UTC).date() - timedelta(days=30)).isoformat()
    report = admin.get(f"/app/scoring/backtest?asOf={day}&horizonDays=20")
    assert report.status_code == 200, report.text
    assert "No accounts to test" in report.text and "Leakage rule" in report.text
    dry = admin.htmx("POST", "/app/scoring/model/dry-run", data={**fields_form(model.text)})
    assert dry.status_code == 200, dry.text
    assert "No accounts to try it on" in dry.text and "Nothing was saved" in dry.text


def test_a_run_from_the_overview_scores_now_and_is_listed(admin: Dashboard) -> None:
    api = admin.ws.api
    push_account(api, "hot.example")
    signals(api, "hot.example", "g2", "pricing", [1, 2])
    r = admin.post("/app/scoring/runs", {"kind": "full"})
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith("/app/scoring?run=")
    runs = api.get("/scoring/runs").json()["data"]
    assert len(runs) == 1 and runs[0]["scored"] == 1 and runs[0]["changed"] == 1
    assert r.headers["location"].endswith(runs[0]["runId"])
    page = admin.get(r.headers["location"])
    assert page.status_code == 200
    assert "The full run finished: 1 accounts scored, 1 changed" in page.text
    assert "No scoring runs yet" not in page.text
    assert re.search(r"<td>full</td>\s*<td><span class=\"badge run-done\">done</span>", page.text)
    again = admin.post("/app/scoring/runs", {"kind": "incremental"})
    assert again.status_code == 303
    listed = admin.get("/app/scoring/runs").text
    assert listed.count("run-done") == 2 and "incremental" in listed
    # A run in progress makes the table poll; a finished one does not.
    assert "hx-trigger" not in listed
    bad = admin.post("/app/scoring/runs", {"kind": "sometimes"})
    assert bad.status_code == 400 and "kind" in bad.text and "sometimes" in bad.text
    assert len(api.get("/scoring/runs").json()["data"]) == 2


def test_another_workspaces_run_is_not_found(
    admin: Dashboard, make_dashboard: Callable[..., Dashboard]
) -> None:
    r = admin.post("/app/scoring/runs", {"kind": "full"})
    run_id = r.headers["location"].split("=", 1)[1]
    stranger = make_dashboard("admin")
    page = stranger.get(f"/app/scoring?run={run_id}")
    assert page.status_code == 404 and run_id in page.text
    assert stranger.get("/app/scoring?run=nope").status_code == 404
    assert admin.get(f"/app/scoring?run={run_id}").status_code == 200


# ---- the model editor ---------------------------------------------------------------------------


def seeded(admin: Dashboard) -> Api:
    api = admin.ws.api
    push_account(api, "buyer.example")
    push_account(api, "reader.example")
    signals(api, "buyer.example", "g2", "pricing", [1, 3])
    signals(api, "reader.example", "website", "page_view", [1, 2, 4])
    score(api)
    return api


def test_a_json_dry_run_changes_nothing_and_save_makes_a_version(admin: Dashboard) -> None:
    api = seeded(admin)
    before = api.get("/accounts").json()["data"]
    model = stored_model(api)["model"]
    # Page views no longer count: reader.example drops, buyer.example keeps its score.
    model["sources"]["website"]["types"]["page_view"]["enabled"] = False
    dry = admin.htmx(
        "POST",
        "/app/scoring/model/dry-run",
        data={"editor": "json", "model": json.dumps(model)},
    )
    assert dry.status_code == 200, dry.text
    assert "Nothing was saved" in dry.text
    assert re.search(r"Scores that change</dt><dd><strong>1</strong> ", dry.text), dry.text
    chart = re.search(
        r'<canvas data-chart="([^"]+)".*?<div hidden class="chart-config" id="\1">(.*?)</div>',
        dry.text,
        re.S,
    )
    assert chart, dry.text
    config = json.loads(chart.group(2))
    assert config["type"] == "bar" and [d["label"] for d in config["data"]["datasets"]] == [
        "Now",
        "Proposed",
    ]
    assert sum(config["data"]["datasets"][0]["data"]) == 2
    # The dry run stored nothing: same model version, same accounts.
    assert stored_model(api)["version"] == 0
    assert api.get("/accounts").json()["data"] == before

    page = admin.get("/app/scoring/model")
    saved = admin.post(
        "/app/scoring/model", {"editor": "json", "version": "0", "model": json.dumps(model)}
    )
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == "/app/scoring/model?saved=1"
    now = stored_model(api)
    assert now["version"] == 1
    assert now["model"]["sources"]["website"]["types"]["page_view"]["enabled"] is False
    shown = admin.get(saved.headers["location"])
    assert "Saved as version 1" in shown.text and "Active: version 1" in shown.text
    assert 'name="sources.website.types.page_view.enabled" aria-label="page_view enabled" >' in (
        shown.text
    )
    assert page.status_code == 200
    # Saving does not rescore: the next run does, with the new version.
    score(api)
    assert api.get("/scoring/runs").json()["data"][0]["modelVersion"] == 1


def test_the_fields_form_dry_runs_and_saves_its_values(admin: Dashboard) -> None:
    api = seeded(admin)
    page = admin.get("/app/scoring/model")
    data = fields_form(page.text)
    assert data["sources.website.weight"] == "3"
    assert data["sources.g2.types.pricing.decay.kind"] == "linear"
    assert data["sources.g2.types.pricing.enabled"] == "on"
    data["sources.website.types.page_view.increment"] = "5"
    del data["sources.g2.types.pricing.enabled"]  # unticked
    data["sources.g2.types.category.decay.kind"] = "step"
    data["sources.g2.types.category.decay.percent"] = "25"
    data["surge.recent_days"] = "14"
    dry = admin.htmx("POST", "/app/scoring/model/dry-run", data=data)
    assert dry.status_code == 200, dry.text
    assert re.search(r"Scores that change</dt><dd><strong>2</strong> ", dry.text), dry.text
    assert stored_model(api)["version"] == 0
    saved = admin.post("/app/scoring/model", data)
    assert saved.status_code == 303, saved.text
    model = stored_model(api)["model"]
    assert model["sources"]["website"]["types"]["page_view"]["increment"] == 5
    assert model["sources"]["g2"]["types"]["pricing"]["enabled"] is False
    assert model["sources"]["g2"]["types"]["category"]["decay"] == {
        "kind": "step",
        "days": 90,
        "percent": 25.0,
    }
    assert model["surge"]["recent_days"] == 14
    # Everything not touched is as it was.
    assert model["sources"]["bombora"] == stored_model(api)["model"]["sources"]["bombora"]
    assert model["sources"]["linkedin"]["types"]["ad_click"]["increment"] == 3
    again = admin.get("/app/scoring/model")
    assert 'name="sources.g2.types.pricing.enabled" aria-label="pricing enabled" >' in again.text


def test_an_invalid_model_names_every_problem_with_its_value(admin: Dashboard) -> None:
    api = admin.ws.api
    model = stored_model(api)["model"]
    model["sources"]["website"]["weight"] = -1
    model["sources"]["g2"]["types"]["pricing"]["cap"] = "lots"
    model["sources"]["g2"]["types"]["bogus"] = model["sources"]["g2"]["types"]["other"]
    body = {"editor": "json", "version": "0", "model": json.dumps(model)}
    r = admin.post("/app/scoring/model", body)
    assert r.status_code == 400, r.text
    assert "3 problems: nothing was saved" in r.text
    assert "<code>sources.website.weight</code> = <code>-1</code>" in r.text
    assert "<code>sources.g2.types.pricing.cap</code> = <code>&#34;lots&#34;</code>" in r.text
    assert "sources.g2.types.bogus" in r.text and "is not a signal type of g2" in r.text
    # The text typed is kept for correcting, in the JSON editor, which is open.
    assert "&#34;bogus&#34;" in r.text and '<details class="card editor" open>' in r.text
    assert stored_model(api)["version"] == 0

    dry = admin.htmx("POST", "/app/scoring/model/dry-run", data=body)
    assert dry.status_code == 400 and "3 problems: nothing was tried" in dry.text
    assert "<html" not in dry.text

    broken = admin.post("/app/scoring/model", {"editor": "json", "model": '{"sources": {'})
    assert broken.status_code == 400
    assert "model is not valid JSON" in broken.text and "line 1 column 14" in broken.text
    deep = admin.post("/app/scoring/model", {"editor": "json", "model": "[" * 5000 + "]" * 5000})
    assert deep.status_code == 400 and "model is nested too deeply" in deep.text
    empty = admin.htmx("POST", "/app/scoring/model/dry-run", data={"editor": "json", "model": ""})
    assert empty.status_code == 400 and "model should not be empty" in empty.text

    data = fields_form(admin.get("/app/scoring/model").text)
    data["sources.website.weight"] = "abc"
    data["sources.g2.types.pricing.decay.days"] = "0"
    r = admin.post("/app/scoring/model", data)
    assert r.status_code == 400
    assert "<code>sources.website.weight</code> = <code>&#34;abc&#34;</code>" in r.text
    assert "<code>sources.g2.types.pricing.decay.days</code> = <code>0</code>" in r.text
    assert 'name="sources.website.weight" value="abc" aria-invalid="true"' in r.text
    assert stored_model(api)["version"] == 0


def test_a_save_over_a_newer_version_is_refused(admin: Dashboard) -> None:
    api = admin.ws.api
    model = stored_model(api)["model"]
    assert api.put("/scoring/model", json=model).status_code == 200  # someone else: v1
    model["sources"]["g2"]["weight"] = 1
    r = admin.post(
        "/app/scoring/model", {"editor": "json", "version": "0", "model": json.dumps(model)}
    )
    assert r.status_code == 409 and "changed to 1 since this editor was opened" in r.text
    assert stored_model(api)["model"]["sources"]["g2"]["weight"] == 3


# ---- the stage editor ---------------------------------------------------------------------------


def test_a_stage_dry_run_changes_nothing_and_save_does(admin: Dashboard) -> None:
    api = seeded(admin)
    page = admin.get("/app/scoring/stages")
    form = form_of(page.text, "/app/scoring/stages")
    current = json.loads(form["stages"])
    assert current["stages"][0]["name"] == "Customer" and form["version"] == "0"
    proposal = {"stages": [{"name": "Everyone"}]}
    dry = admin.htmx("POST", "/app/scoring/stages/dry-run", data={"stages": json.dumps(proposal)})
    assert dry.status_code == 200, dry.text
    assert re.search(r"Accounts that change stage</dt><dd><strong>2</strong>", dry.text)
    assert dry.text.count('<span class="badge stage">Everyone</span>') >= 1
    assert stored_stages(api)["version"] == 0
    saved = admin.post("/app/scoring/stages", {"stages": json.dumps(proposal), "version": "0"})
    assert saved.status_code == 303 and saved.headers["location"].endswith("saved=1")
    assert [s["name"] for s in stored_stages(api)["stages"]] == ["Everyone"]
    shown = admin.get(saved.headers["location"])
    assert "Saved as version 1" in shown.text and "(version 1)" in shown.text


def test_an_invalid_stage_list_names_every_problem(admin: Dashboard) -> None:
    api = admin.ws.api
    bad = {
        "stages": [
            {"name": "Hot", "rule": {"field": "rtp_account_score", "op": "gte", "value": "high"}},
            {"name": "hot", "rule": {"field": "nope", "op": "eq", "value": 1}},
        ]
    }
    r = admin.post("/app/scoring/stages", {"stages": json.dumps(bad), "version": "0"})
    assert r.status_code == 400, r.text
    assert "<code>stages.0.rule.value</code> = <code>&#34;high&#34;</code>" in r.text
    assert "<code>stages.1.name</code> = <code>&#34;hot&#34;</code>" in r.text
    assert "stages.1.rule" in r.text and "the last stage is the fallback" in r.text
    dry = admin.htmx("POST", "/app/scoring/stages/dry-run", data={"stages": json.dumps(bad)})
    assert dry.status_code == 400 and "stages.0.rule.value" in dry.text
    empty = admin.post("/app/scoring/stages", {"stages": '{"stages": []}'})
    assert empty.status_code == 400 and "stages must be a non-empty array" in empty.text
    assert stored_stages(api)["version"] == 0


def test_names_from_users_are_escaped(admin: Dashboard) -> None:
    evil = "<script>alert(1)</script>"
    proposal = {"stages": [{"name": evil, "rule": {"deal": {"status": "won"}}}, {"name": "Rest"}]}
    saved = admin.post("/app/scoring/stages", {"stages": json.dumps(proposal)})
    assert saved.status_code == 303, saved.text
    for path in ("/app/scoring/stages", "/app/scoring"):
        page = admin.get(path)
        assert evil not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    bad = admin.post("/app/scoring/model", {"editor": "json", "model": json.dumps({evil: 1})})
    assert bad.status_code == 400 and evil not in bad.text and "&lt;script&gt;" in bad.text


# ---- backtest -----------------------------------------------------------------------------------


def test_the_backtest_report_with_its_chart(admin: Dashboard, engine: Any) -> None:
    api = admin.ws.api
    today = datetime.now(UTC).date()
    cutoff = today - timedelta(days=30)
    for d in ("buyer.example", "browser.example", "idle.example"):
        push_account(api, d)
    with write_tx(engine) as conn:  # the accounts must exist before the cut-off
        conn.execute(
            text("UPDATE accounts SET created_at = created_at - :d WHERE workspace_id = :ws"),
            {"d": 60 * US_PER_DAY, "ws": admin.ws.id},
        )
    signals(api, "buyer.example", "g2", "pricing", [35, 40])
    signals(api, "browser.example", "website", "page_view", [33])
    deal = {"deals": [{"externalDealId": "D-1", "name": "D-1", "stageLabel": "Discovery",
                       "startDate": (cutoff + timedelta(days=5)).isoformat(),
                       "associatedAccounts": [{"domain": "buyer.example"}]}]}  # fmt: skip
    assert api.post("/deals", json=deal).status_code == 200
    r = admin.get(f"/app/scoring/backtest?asOf={cutoff.isoformat()}&horizonDays=20")
    assert r.status_code == 200, r.text
    assert "1.000" in r.text and "ROC AUC" in r.text
    assert "1 / 3" in r.text and "Leakage rule" in r.text
    chart = re.search(
        r'<canvas data-chart="([^"]+)".*?<script type="application/json" id="\1">(.*?)</script>',
        r.text,
        re.S,
    )
    assert chart, r.text
    config = json.loads(chart.group(2))
    labels = config["data"]["labels"]
    assert labels[0] == "Unaware" and labels[-1] == "Customer"
    accounts = next(d for d in config["data"]["datasets"] if d["label"] == "Accounts")
    assert sum(accounts["data"]) == 3
    assert f'value="{cutoff.isoformat()}"' in r.text and 'value="20"' in r.text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("asOf=soon", "asOf: &#39;soon&#39; is not a date (YYYY-MM-DD)"),
        (
            "asOf=2026-01-01&horizonDays=0",
            "horizonDays: &#39;0&#39; must be an integer from 1 to 3650",
        ),
        ("asOf=2026-01-01&horizonDays=ten", "horizonDays: &#39;ten&#39; must be an integer"),
        ("asOf=2999-01-01", "asOf: &#39;2999-01-01&#39; must be a day in the past"),
    ],
)
def test_backtest_input_is_checked(admin: Dashboard, query: str, message: str) -> None:
    r = admin.get(f"/app/scoring/backtest?{query}")
    assert r.status_code == 400
    assert message in r.text, r.text


# ---- who may -----------------------------------------------------------------------------


def test_members_get_403_everywhere(member: Dashboard) -> None:
    for path in GET_ROUTES:
        assert member.get(path).status_code == 403, path
    for path in POST_ROUTES:
        assert member.post(path, {"kind": "full"}).status_code == 403, path
        assert member.htmx("POST", path, data={"stages": "{}"}).status_code == 403, path
    assert member.ws.api.get("/scoring/runs").json()["data"] == []
    assert "/app/scoring" not in member.get("/app/accounts").text


def test_anonymous_visitors_are_sent_to_sign_in(client: Any) -> None:
    for path in GET_ROUTES:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/app/login?next=" + path)


def test_posts_without_the_csrf_token_are_refused(admin: Dashboard) -> None:
    model = json.dumps(stored_model(admin.ws.api)["model"])
    for path in POST_ROUTES:
        r = admin.client.post(
            path,
            data={"kind": "full", "editor": "json", "model": model, "stages": "{}"},
            follow_redirects=False,
        )
        assert r.status_code == 403, path
        assert "security token" in r.text
    assert admin.ws.api.get("/scoring/runs").json()["data"] == []
    assert stored_model(admin.ws.api)["version"] == 0
