"""Limits on rules (issue 16): a rule beyond the limits on its size is refused with a 400
naming the figure and the limit; one stored before the limits existed is skipped by
scoring, not a 500 of every run; a preview is stopped after a time limit (422) and only a
few run at once per workspace and in all (429 with Retry-After)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from intently.app import create_app
from intently.kit.db import write_tx
from intently.kit.timefmt import now_us
from intently.rules import MAX_CONDITIONS, MAX_RELATED_CONDITIONS, MAX_VALUES
from intently.segments import repository as segments_repo
from intently.settings import Settings
from intently.stages import repository as stages_repo
from intently.stages.schemas import default_definition
from tests.support.api import Api, Workspace, new_workspace
from tests.support.envelope import one_error
from tests.support.segments import account, create, push

SCORE = "rtp_account_score"


def score_at_least(i: int) -> dict[str, Any]:
    return {"field": SCORE, "op": "gte", "value": i}


def website(days: int) -> dict[str, Any]:
    return {"signal": {"source": "website"}, "window_days": days, "op": "gte", "value": 1}


def stage_list(rule: dict[str, Any]) -> dict[str, Any]:
    return {"stages": [{"name": "Big", "rule": rule}, {"name": "Rest"}]}


def assert_refused(r: Any, prop: str, path: str, **constraint: str) -> None:
    """A 400 with one error, naming the property, where in it, and the limit broken."""
    assert r.status_code == 400, r.text
    assert one_error(r) == {"property": prop, "path": path, "constraints": constraint}


# ---- refused when saved or previewed ------------------------------------------------------


def test_a_stage_rule_of_1200_conditions_is_refused_naming_the_figure_and_the_limit(
    api: Api,
) -> None:
    before = api.get("/stages").json()["data"]
    r = api.put("/stages", json=stage_list({"any": [score_at_least(i) for i in range(1200)]}))
    assert_refused(
        r,
        "rule",
        "stages.0.rule",
        maxConditions=f"rule holds 1200 conditions; a rule may hold at most {MAX_CONDITIONS}",
    )
    assert api.get("/stages").json()["data"] == before  # nothing saved
    # The same rule at the limit is taken.
    ok = {"any": [score_at_least(i) for i in range(MAX_CONDITIONS)]}
    assert api.put("/stages", json=stage_list(ok)).status_code == 200


def test_too_many_signal_conditions_are_refused_though_few_conditions(api: Api) -> None:
    rule = {"any": [website(i + 1) for i in range(MAX_RELATED_CONDITIONS + 1)]}
    for r, prop in [
        (api.post("/segments/preview", json={"rules": rule}), "rules"),
        (api.post("/segments", json={"name": "s", "type": "dynamic", "rules": rule}), "rules"),
        (api.put("/stages", json=stage_list(rule)), "rule"),
        (api.post("/scoring/dry-run", json={"stages": stage_list(rule)}), "rule"),
    ]:
        assert r.status_code == 400, r.text
        err = one_error(r)
        assert err["property"] == prop
        assert err["constraints"] == {
            "maxRelatedConditions": f"{prop} holds {MAX_RELATED_CONDITIONS + 1} signal, surge, "
            f"deal and activity conditions; a rule may hold at most {MAX_RELATED_CONDITIONS}"
        }


def test_too_many_values_in_all_lists_together_are_refused(api: Api) -> None:
    lists = [
        {"field": "domain", "op": "in", "value": [f"d{i}-{j}.com" for j in range(1000)]}
        for i in range(MAX_VALUES // 1000 + 1)
    ]
    sid = create(api, "narrow", {"all": lists[:1]})["segmentId"]
    r = api.patch(f"/segments/{sid}", json={"rules": {"all": lists}})
    assert_refused(
        r,
        "rules",
        "rules",
        maxValues=f"rules lists {len(lists) * 1000} values in its in and not_in conditions; "
        f"a rule may list at most {MAX_VALUES}",
    )
    assert api.get(f"/segments/{sid}").json()["data"]["rules"] == {"all": lists[:1]}


def test_a_rule_nested_too_deep_is_refused_where_it_breaks_the_limit(api: Api) -> None:
    rule: dict[str, Any] = score_at_least(1)
    for _ in range(10):
        rule = {"not": rule}
    r = api.post("/segments/preview", json={"rules": rule})
    assert r.status_code == 400, r.text
    err = one_error(r)
    assert err["path"] == "rules" + ".not" * 10
    assert err["constraints"] == {"maxDepth": "rules must not nest deeper than 10 levels"}


def test_a_tags_list_of_a_thousand_values_compiles_within_sqlite_limits(api: Api) -> None:
    """A long list once compiled to a chain of ORs deeper than SQLite takes (a 500)."""
    push(api, account("tagged.example", "t999"), account("other.example", "x"))
    rule = {"field": "tags", "op": "in", "value": [f"t{i}" for i in range(1000)]}
    r = api.post("/segments/preview", json={"rules": rule})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["count"] == 1
    r = api.post("/segments/preview", json={"rules": {**rule, "op": "not_in"}})
    assert r.json()["data"]["count"] == 1


# ---- stored before the limits -------------------------------------------------------------


def test_a_stage_rule_stored_before_the_limits_is_skipped_not_a_failed_run(
    workspace: Workspace, engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api, ws = workspace.api, workspace.id
    push(api, account("one.example"), account("two.example"))
    definition = default_definition()
    big = {"any": [score_at_least(i) for i in range(1200)]}
    definition["stages"][:-1] = [{"name": "Big", "rule": big}, {"name": "All", "rule": {
        "not": {"field": "domain", "op": "eq", "value": "none.example"}}}]  # fmt: skip
    with write_tx(engine) as conn:  # as a stage list saved before the limits existed
        stages_repo.insert_stage_set(conn, ws, 1, definition, now_us())
    with caplog.at_level(logging.WARNING):
        r = api.post("/scoring/runs", json={"full": True})
    assert r.status_code == 200, r.text
    # The stage that fits places the accounts; the oversize one is skipped, and says so.
    r = api.get("/accounts", params={"limit": 10})
    assert {a["rtp_journey_stage"] for a in r.json()["data"]["data"]} == {"All"}
    problems = api.get("/stages").json()["data"]["problems"]
    assert problems == [
        {
            "stage": "Big",
            "path": "stages.0.rule",
            "message": f"rule holds 1200 conditions; a rule may hold at most {MAX_CONDITIONS}. "
            "Stage 'Big' places no account until its rule is narrowed",
        }
    ]
    assert any("stage rule skipped" in m and "Big" in m for m in caplog.messages)
    # A dry run of a new model under the stored stage list skips it the same way.
    model = api.get("/scoring/model").json()["data"]["model"]
    r = api.post("/scoring/dry-run", json={"model": model})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["stageMoves"] == []


def test_a_segment_rule_stored_before_the_limits_does_not_fail_scoring(
    workspace: Workspace, engine: Any
) -> None:
    api, ws = workspace.api, workspace.id
    push(api, account("one.example", "hot"))
    kept = create(api, "hot", {"field": "tags", "op": "contains", "value": "hot"})
    now = now_us()
    seg = {"workspace_id": ws, "id": uuid.uuid4().hex[:24], "name": "big", "type": "dynamic",
           "status": "active", "rules": {"any": [score_at_least(i) for i in range(1200)]},
           "created_at": now, "updated_at": now}  # fmt: skip
    with write_tx(engine) as conn:
        segments_repo.insert(conn, seg)
    r = api.post("/scoring/runs", json={"full": True})
    assert r.status_code == 200, r.text
    r = api.post("/segments/refresh")
    assert r.status_code == 200, r.text
    assert [s["segmentId"] for s in r.json()["data"]["segments"]] == [kept["segmentId"]]
    # Asked for by itself, it says why it is not refreshed.
    r = api.post(f"/segments/{seg['id']}/refresh")
    assert_refused(
        r,
        "rules",
        "rules",
        maxConditions=f"rules holds 1200 conditions; a rule may hold at most {MAX_CONDITIONS}",
    )


# ---- time limit and fairness --------------------------------------------------------------


def app_with(database_url: str, **limits: Any) -> tuple[TestClient, Any]:
    settings = Settings(
        database_url=database_url,
        rate_limit_per_minute=0,
        rate_limit_anonymous_per_minute=0,
        **limits,
    )
    app = create_app(settings)
    return TestClient(app, raise_server_exceptions=False), app


@pytest.fixture(scope="module")
def slow_app(database_url: str) -> Iterator[tuple[TestClient, Any]]:
    """An app whose previews have almost no time: any real one runs out of it."""
    client, app = app_with(database_url, preview_timeout_s=0.000001)
    yield client, app
    app.state.intently.engine.dispose()


@pytest.fixture(scope="module")
def capped_app(database_url: str) -> Iterator[tuple[TestClient, Any]]:
    """An app taking 2 previews at once per workspace and 3 in all."""
    client, app = app_with(database_url, preview_concurrency_per_workspace=2, preview_concurrency=3)
    yield client, app
    app.state.intently.engine.dispose()


def key_on(app_client: tuple[TestClient, Any]) -> tuple[Api, int]:
    client, app = app_client
    w = new_workspace(client, app.state.intently.engine, "preview")
    return w.api, w.id


def costly_rule() -> dict[str, Any]:
    return {"any": [website(i + 1) for i in range(MAX_RELATED_CONDITIONS)]}


def test_a_preview_over_the_time_limit_is_stopped_with_a_clear_error(
    slow_app: tuple[TestClient, Any], api: Api
) -> None:
    slow, _ = key_on(slow_app)
    domains = [f"d{i}.example" for i in range(300)]
    for i in range(0, len(domains), 100):
        push(slow, *(account(d) for d in domains[i : i + 100]))
        push(api, *(account(d) for d in domains[i : i + 100]))
    r = slow.post("/segments/preview", json={"rules": costly_rule()})
    assert r.status_code == 422, r.text
    assert r.json()["customMessage"] == (
        "The preview took longer than 1e-06 s and was stopped; narrow the rule (fewer signal, "
        "surge, deal or activity conditions, shorter windows) and try again"
    )
    # The server is fine afterwards, and the same preview with time to run answers.
    assert slow.get("/accounts", params={"limit": 1}).status_code == 200
    r = api.post("/segments/preview", json={"rules": costly_rule()})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["count"] == 0


def test_previews_beyond_the_per_workspace_cap_get_429_with_retry_after(
    capped_app: tuple[TestClient, Any],
) -> None:
    _, app = capped_app
    busy, ws = key_on(capped_app)
    quiet, _ = key_on(capped_app)
    slots = app.state.intently.previews
    rule = {"rules": score_at_least(1)}
    with slots.hold(ws), slots.hold(ws):  # two of the workspace's previews are running
        r = busy.post("/segments/preview", json=rule)
        assert r.status_code == 429, r.text
        assert r.headers["Retry-After"] == "2"
        assert r.json()["customMessage"] == (
            "Too many rule previews, dry runs and backtests running: at most 2 at once per "
            "workspace; retry in 2 s"
        )
        dry_run = {"stages": {"stages": [{"name": "Only"}]}}
        assert busy.post("/scoring/dry-run", json=dry_run).status_code == 429
        assert busy.get("/scoring/backtest", params={"asOf": "2020-01-01"}).status_code == 429
        # Another workspace is not held up by them.
        assert quiet.post("/segments/preview", json=rule).status_code == 200
    assert busy.post("/segments/preview", json=rule).status_code == 200  # slots given back


def test_previews_beyond_the_server_cap_get_429(
    capped_app: tuple[TestClient, Any],
) -> None:
    _, app = capped_app
    apis = [key_on(capped_app) for _ in range(4)]
    slots = app.state.intently.previews
    rule = {"rules": score_at_least(1)}
    with slots.hold(apis[0][1]), slots.hold(apis[1][1]), slots.hold(apis[2][1]):
        r = apis[3][0].post("/segments/preview", json=rule)
        assert r.status_code == 429, r.text
        assert "at most 3 at once on this server" in r.json()["customMessage"]
    assert apis[3][0].post("/segments/preview", json=rule).status_code == 200
