"""Generic signals (POST /signals), an account's signals, sources and their settings,
ingest runs and rejects (spec/signals.md; api-v1.md section 10)."""

from __future__ import annotations

from typing import Any

import pytest

from intently.catalog import MAX_SIGNAL_VALUE
from intently.signals.store import ingest_run
from tests.support.api import Api, Workspace
from tests.support.data import push_account
from tests.support.envelope import business, one_error, validation_data


def signal(domain: str = "acme.com", **fields: Any) -> dict[str, Any]:
    return {
        "domain": domain,
        "source": "g2",
        "type": "pricing",
        "occurredAt": "2026-11-20T10:00:00Z",
        **fields,
    }


def push(api: Api, *items: dict[str, Any]) -> list[dict[str, Any]]:
    r = api.post("/signals", json={"signals": list(items)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["statusCode"] == 200 and body["path"] == "/api/v1/signals"
    return list(body["data"]["results"])


def signals_of(api: Api, aid: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = dict(params)
        if cursor:
            q["cursor"] = cursor
        r = api.get(f"/accounts/{aid}/signals", params=q)
        assert r.status_code == 200, r.text
        page = r.json()["data"]
        out += page["data"]
        cursor = page["nextCursor"]
        if not page["hasNextPage"]:
            return out


# ---- POST /signals ------------------------------------------------------------------------


def test_push_creates_then_reports_duplicates(api: Api) -> None:
    first = push(api, signal(id="e1"), signal(topic="crm"))
    assert [r["status"] for r in first] == ["created", "created"]
    assert first[0] == {"index": 0, "id": "e1", "domain": "acme.com", "status": "created"}
    again = push(api, signal(id="e1"), signal(topic="crm"))
    assert [r["status"] for r in again] == ["duplicate", "duplicate"]


def test_same_id_with_new_content_is_an_update(api: Api) -> None:
    push(api, signal(id="e1", value=1))
    assert push(api, signal(id="e1", value=3))[0]["status"] == "updated"
    aid = push_account(api, "acme.com")
    [s] = signals_of(api, aid)
    assert s["value"] == 3


def test_domain_is_normalised(api: Api) -> None:
    [r] = push(api, signal("https://www.Acme.COM/pricing"))
    assert r["domain"] == "acme.com"


def test_unknown_source_and_type_fail_only_their_item(api: Api) -> None:
    out = push(
        api,
        signal(source="clearbit"),
        signal(type="lunch"),
        signal(),
    )
    assert out[0] == {
        "index": 0, "id": None, "domain": "acme.com", "status": "failed",
        "reason": "Unknown source 'clearbit'",
    }  # fmt: skip
    assert out[1]["status"] == "failed"
    assert out[1]["reason"].startswith("Unknown type 'lunch' for source 'g2'")
    assert out[2]["status"] == "created"


def test_a_registered_custom_source_takes_any_type(api: Api) -> None:
    r = api.post("/sources", json={"name": "webinars"})
    assert r.status_code == 201, r.text
    assert api.post("/sources", json={"name": "webinars"}).status_code == 200
    [out] = push(api, signal(source="webinars", type="attended"))
    assert out["status"] == "created"


@pytest.mark.parametrize("name", ["website", "g2"])
def test_a_builtin_source_cannot_be_registered(api: Api, name: str) -> None:
    business(api.post("/sources", json={"name": name}), 409, f"Source '{name}' is built in")


@pytest.mark.parametrize("name", ["Web", "a", "with space", "x" * 33, "1abc"])
def test_a_custom_source_name_is_checked(api: Api, name: str) -> None:
    err = one_error(api.post("/sources", json={"name": name}))
    assert err["property"] == "name"


@pytest.mark.parametrize(
    ("prop", "value"),
    [("domain", "not a domain"), ("domain", "10.0.0.1"), ("occurredAt", "yesterday"),
     ("value", "3"), ("source", "")],
)  # fmt: skip
def test_a_shape_error_rejects_the_whole_batch(api: Api, prop: str, value: Any) -> None:
    r = api.post("/signals", json={"signals": [signal(id="ok"), signal(**{prop: value})]})
    [err] = validation_data(r)
    assert err["property"] == prop and err["path"] == f"signals.1.{prop}"
    # Nothing of the batch was written: the valid first item is still new.
    assert push(api, signal(id="ok"))[0]["status"] == "created"


@pytest.mark.parametrize("value", [-1.7e308, -1.0, 1.7e308, MAX_SIGNAL_VALUE * 2.0])
def test_a_value_out_of_range_is_refused_naming_it(api: Api, value: float) -> None:
    # A negative or huge value would drive the account score far outside 0 to 100.
    r = api.post("/signals", json={"signals": [signal(id="ok"), signal(value=value)]})
    [err] = validation_data(r)
    assert err["property"] == "value" and err["path"] == "signals.1.value"
    [text] = err["constraints"].values()
    assert text.startswith("value must be a number from 0 to 1000000") and repr(value) in text
    assert push(api, signal(id="ok"))[0]["status"] == "created"


def test_values_at_the_bounds_are_accepted(api: Api) -> None:
    got = push(api, signal(id="low", value=0), signal(id="high", value=MAX_SIGNAL_VALUE))
    assert [r["status"] for r in got] == ["created", "created"]


@pytest.mark.parametrize("prop", ["domain", "source", "type", "occurredAt"])
def test_required_properties(api: Api, prop: str) -> None:
    item = signal()
    del item[prop]
    err = one_error(api.post("/signals", json={"signals": [item]}))
    assert err["property"] == prop


def test_batch_size_limits(api: Api) -> None:
    assert one_error(api.post("/signals", json={"signals": []}))["property"] == "signals"
    many = [signal(id=f"s{i}") for i in range(1001)]
    assert one_error(api.post("/signals", json={"signals": many}))["property"] == "signals"
    assert len(push(api, *many[:1000])) == 1000


def test_signals_need_a_key(api: Api) -> None:
    r = api.with_key(None).post("/signals", json={"signals": [signal()]})
    assert r.status_code == 401


# ---- GET /accounts/{rtp_aid}/signals ---------------------------------------------------------


def test_signals_of_a_domain_count_once_the_account_exists(api: Api) -> None:
    push(api, signal("late.io", id="a", occurredAt="2026-01-05"),
         signal("late.io", id="b", occurredAt="2026-03-01T08:30:00+02:00"))  # fmt: skip
    aid = push_account(api, "late.io")
    got = signals_of(api, aid)
    assert [s["occurredAt"] for s in got] == [
        "2026-03-01T06:30:00.000Z",
        "2026-01-05T00:00:00.000Z",
    ]
    s = got[0]
    assert set(s) == {"signalId", "source", "type", "topic", "occurredAt", "value", "provider",
                      "matchMethod", "confidence", "receivedAt"}  # fmt: skip
    assert (s["source"], s["type"], s["topic"], s["value"]) == ("g2", "pricing", None, 1.0)


def test_signals_page_newest_first_across_pages(api: Api) -> None:
    items = [signal("paged.io", id=f"p{i}", occurredAt=f"2026-02-{1 + i % 20:02d}")
             for i in range(45)]  # fmt: skip
    push(api, *items)
    aid = push_account(api, "paged.io")
    got = signals_of(api, aid, limit=7)
    assert len(got) == 45 and len({s["signalId"] for s in got}) == 45
    keys = [(s["occurredAt"], s["signalId"]) for s in got]
    assert keys == sorted(keys, reverse=True)


def test_signals_filtered_by_source(api: Api) -> None:
    api.post("/sources", json={"name": "events"})
    push(api, signal("mix.io"), signal("mix.io", source="events", type="booth"))
    aid = push_account(api, "mix.io")
    assert [s["source"] for s in signals_of(api, aid, source="events", limit=1)] == ["events"]


def test_signals_of_an_unknown_or_malformed_account(api: Api) -> None:
    business(api.get("/accounts/0123456789abcdef01234567/signals"), 404,
             "Account '0123456789abcdef01234567' not found")  # fmt: skip
    business(api.get("/accounts/nope/signals"), 400, "Invalid rtp_aid format")


def test_another_workspace_sees_no_signals(workspace: Workspace, other: Workspace) -> None:
    push(workspace.api, signal("private.io"))
    aid = push_account(workspace.api, "private.io")
    business(other.api.get(f"/accounts/{aid}/signals"), 404, f"Account '{aid}' not found")
    other_aid = push_account(other.api, "private.io")
    assert signals_of(other.api, other_aid) == []


def test_a_cursor_is_bound_to_its_account(api: Api) -> None:
    push(api, *[signal("one.io", id=f"o{i}") for i in range(3)])
    a, b = push_account(api, "one.io"), push_account(api, "two.io")
    cursor = api.get(f"/accounts/{a}/signals", params={"limit": 1}).json()["data"]["nextCursor"]
    business(api.get(f"/accounts/{b}/signals", params={"cursor": cursor}), 400, "Invalid cursor")


# ---- sources and settings ---------------------------------------------------------------------


def test_sources_list_builtins_with_their_settings(api: Api) -> None:
    r = api.get("/sources")
    assert r.status_code == 200
    by = {s["name"]: s for s in r.json()["data"]}
    assert set(by) >= {"website", "bombora", "g2", "linkedin"}
    assert by["bombora"]["settings"]["surgeThreshold"] == 60
    assert by["g2"]["types"] == ["pricing", "comparison", "alternatives", "category", "profile",
                                 "sponsored", "other"]  # fmt: skip


def test_settings_change_only_what_is_given(api: Api) -> None:
    r = api.put("/sources/bombora/settings", json={"topics": ["CRM Software"]})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"surgeThreshold": 60, "topics": ["CRM Software"]}
    r = api.put("/sources/bombora/settings", json={"surgeThreshold": 70})
    assert api.get("/sources/bombora/settings").json()["data"] == {
        "surgeThreshold": 70, "topics": ["CRM Software"],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("source", "body", "prop"),
    [
        ("bombora", {"surgeThreshold": 101}, "surgeThreshold"),
        ("bombora", {"surgeThreshold": "60"}, "surgeThreshold"),
        ("bombora", {"colour": "red"}, "colour"),
        ("g2", {"tagMap": [{"tag": "x.*", "type": "lunch"}]}, "type"),
        ("linkedin", {"trailingDays": -1}, "trailingDays"),
        ("website", {"ipRetentionDays": 1.5}, "ipRetentionDays"),
    ],
)
def test_invalid_settings_are_refused_and_kept_as_they_were(
    api: Api, source: str, body: dict[str, Any], prop: str
) -> None:
    before = api.get(f"/sources/{source}/settings").json()["data"]
    err = one_error(api.put(f"/sources/{source}/settings", json=body))
    assert err["property"] == prop
    assert api.get(f"/sources/{source}/settings").json()["data"] == before


def test_settings_errors_say_what_is_wrong(api: Api) -> None:
    err = one_error(api.put("/sources/bombora/settings", json={"surgeThreshold": 101}))
    assert err["constraints"] == {"max": "surgeThreshold must not be greater than 100"}
    err = one_error(api.put("/sources/bombora/settings", json={"colour": "red"}))
    assert err["constraints"] == {"whitelistValidation": "property colour should not exist"}
    err = one_error(api.put("/sources/g2/settings", json={"tagMap": [{"tag": "a", "type": "x"}]}))
    assert err["path"] == "tagMap.0.type"
    assert err["constraints"]["isValid"].startswith("type must be one of pricing, comparison")


def test_settings_of_an_unknown_source(api: Api) -> None:
    r = api.get("/sources/clearbit/settings")
    assert r.status_code == 404
    assert r.json()["customMessage"].startswith("Source 'clearbit' has no settings")


def test_settings_belong_to_one_workspace(workspace: Workspace, other: Workspace) -> None:
    workspace.api.put("/sources/bombora/settings", json={"surgeThreshold": 80})
    assert other.api.get("/sources/bombora/settings").json()["data"]["surgeThreshold"] == 60


# ---- runs and rejects --------------------------------------------------------------------------


def make_run(engine: Any, ws: int, rejects: int, source: str = "bombora") -> str:
    with ingest_run(engine, ws, source, "file", f"{source}.csv") as run:
        for i in range(rejects):
            run.read()
            run.reject("invalid_domain", f"Domain 'bad{i}' is not a domain name",
                       {"Domain": f"bad{i}"}, line=i + 2)  # fmt: skip
    return run.run_id


def test_runs_are_listed_newest_first_and_read_one_by_one(
    api: Api, engine: Any, workspace: Workspace
) -> None:
    first = make_run(engine, workspace.id, 1)
    second = make_run(engine, workspace.id, 2, source="g2")
    page = api.get("/ingest/runs", params={"limit": 1}).json()["data"]
    assert [r["runId"] for r in page["data"]] == [second]
    nxt = api.get("/ingest/runs", params={"cursor": page["nextCursor"]}).json()["data"]
    assert [r["runId"] for r in nxt["data"]] == [first]
    only = api.get("/ingest/runs", params={"source": "bombora"}).json()["data"]["data"]
    assert [r["runId"] for r in only] == [first]
    one = api.get(f"/ingest/runs/{second}").json()["data"]
    assert (one["status"], one["read"], one["rejected"], one["rejectedByReason"]) == (
        "done", 2, 2, {"invalid_domain": 2},
    )  # fmt: skip
    business(api.get("/ingest/runs/xyz"), 400, "Invalid runId format")
    business(api.get("/ingest/runs/0123456789abcdef01234567"), 404,
             "Run '0123456789abcdef01234567' not found")  # fmt: skip


def test_rejects_are_listed_with_line_reason_and_record(
    api: Api, engine: Any, workspace: Workspace
) -> None:
    run_id = make_run(engine, workspace.id, 5)
    got: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "source": "bombora", "runId": run_id}
        if cursor:
            params = {"cursor": cursor}
        page = api.get("/ingest/rejects", params=params).json()["data"]
        got += page["data"]
        cursor = page["nextCursor"]
        if not page["hasNextPage"]:
            break
    assert [r["line"] for r in got] == [2, 3, 4, 5, 6]
    assert got[0]["record"] == {"Domain": "bad0"}
    assert got[0]["reason"] == "invalid_domain" and got[0]["status"] == "open"
    assert api.get("/ingest/rejects", params={"reason": "nope"}).json()["data"]["data"] == []


def test_runs_and_rejects_belong_to_one_workspace(
    engine: Any, workspace: Workspace, other: Workspace
) -> None:
    run_id = make_run(engine, workspace.id, 1)
    assert other.api.get("/ingest/rejects").json()["data"]["data"] == []
    assert other.api.get("/ingest/runs").json()["data"]["data"] == []
    assert other.api.get(f"/ingest/runs/{run_id}").status_code == 404
