"""GET /events and GET /events/{id}: the change log, oldest first, keyset over (seq, id);
filters, paging, the poll cursor, tenancy and the API ladder."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from intently import pipeline
from tests.support.api import Api, Workspace
from tests.support.scoring import signals
from tests.support.segments import (
    HOT,
    UNKNOWN_ID,
    account,
    business,
    create,
    events,
    push,
    unauthorised,
    validation,
)


def page(api: Api, **params: Any) -> dict[str, Any]:
    r = api.get("/events", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["path"] == "/api/v1/events"
    data = dict(body["data"])
    assert set(data) == {"data", "nextCursor", "hasNextPage", "syncTimestamp", "pollCursor"}
    assert (data["nextCursor"] is None) == (not data["hasNextPage"])
    return data


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [e["eventId"] for e in items]


def test_account_created_events(api: Api) -> None:
    a, b = push(api, account("a.com", name="Acme", externalId="crm-1"), account("b.com"))
    got = events(api)
    assert [(e["type"], e["rtp_aid"]) for e in got] == [
        ("account.created", a),
        ("account.created", b),
    ]
    assert got[0] == {
        "eventId": got[0]["eventId"],
        "type": "account.created",
        "occurredAt": got[0]["occurredAt"],
        "rtp_aid": a,
        "before": None,
        "after": {"domain": "a.com", "name": "Acme", "externalId": "crm-1"},
    }
    assert got[0]["occurredAt"].endswith("Z") and len(got[0]["occurredAt"]) == 24
    push(api, account("a.com", name="Acme 2"))  # an update is not a creation
    assert len(events(api)) == 2


def test_an_empty_log(api: Api) -> None:
    data = page(api)
    assert data["data"] == [] and data["pollCursor"] is None


def test_get_one_event_and_the_ladder(workspace: Workspace, other: Workspace) -> None:
    api = workspace.api
    push(api, account("a.com"))
    (e,) = events(api)
    r = api.get(f"/events/{e['eventId']}")
    assert r.status_code == 200, r.text
    assert r.json()["data"] == e
    assert workspace.crm.get(f"/events/{e['eventId']}").json()["data"] == e
    unauthorised(api.with_key(None).get(f"/events/{e['eventId']}"))
    unauthorised(api.with_key(None).get("/events"))
    business(api.with_key("nope").get("/events"), 401, "Invalid API key")
    business(api.get(f"/events/{UNKNOWN_ID}"), 404, f"Event '{UNKNOWN_ID}' not found")
    for bad in ("abc", e["eventId"].upper(), e["eventId"] + "0"):
        business(api.get(f"/events/{bad}"), 400, "Invalid eventId format")
    business(other.api.get(f"/events/{e['eventId']}"), 404, f"Event '{e['eventId']}' not found")
    assert events(other.api) == []


@pytest.mark.parametrize(
    ("params", "path", "text"),
    [
        ({"type": "bogus"}, "type", "got 'bogus'"),
        ({"type": "account.created,segment.left"}, "type", "got 'segment.left'"),
        ({"since": "yesterday"}, "since", "got 'yesterday'"),
        ({"since": "2026-13-01"}, "since", "got '2026-13-01'"),
        ({"limit": "0"}, "limit", "limit must be an integer between 1 and 1000"),
        ({"limit": "1001"}, "limit", "limit must be an integer between 1 and 1000"),
        ({"limit": "x"}, "limit", "limit must be an integer between 1 and 1000"),
    ],
)
def test_bad_query_is_a_validation_error(
    api: Api, params: dict[str, str], path: str, text: str
) -> None:
    errors = validation(api.get("/events", params=params))
    assert list(errors) == [path]
    assert text in next(iter(errors[path].values()))


def test_bad_rtp_aid_filter(api: Api) -> None:
    business(api.get("/events", params={"rtp_aid": "abc"}), 400, "Invalid rtp_aid format")


def test_type_filter(api: Api) -> None:
    (a,) = push(api, account("a.com", "hot"))
    sid = create(api, "Hot", HOT)["segmentId"]
    assert [e["type"] for e in events(api)] == ["account.created", "segment.entered"]
    assert [e["type"] for e in events(api, type="segment.entered")] == ["segment.entered"]
    both = events(api, type=" segment.entered , account.created ")
    assert [e["type"] for e in both] == ["account.created", "segment.entered"]
    assert events(api, type="stage.changed") == []
    assert events(api, type="")  # an empty filter is no filter
    assert events(api, type="segment.entered")[0]["segment"]["segmentId"] == sid
    assert events(api, type="segment.entered")[0]["rtp_aid"] == a


def test_since_filter(api: Api) -> None:
    push(api, account("a.com"))
    time.sleep(0.01)
    cut = datetime.now(UTC)
    time.sleep(0.01)
    (b,) = push(api, account("b.com"))
    for since in (
        cut.isoformat(),
        cut.strftime("%Y-%m-%dT%H:%M:%S.%f"),
        cut.isoformat()[:-6] + "Z",
    ):
        assert [e["rtp_aid"] for e in events(api, since=since)] == [b], since
    later = cut.astimezone().isoformat()  # the same instant with a local offset
    assert [e["rtp_aid"] for e in events(api, since=later)] == [b]
    assert events(api, since="2999-01-01") == []
    assert len(events(api, since="2000-01-01")) == 2
    # an event's own occurredAt (milliseconds) includes it
    first = events(api)[0]
    assert first in events(api, since=first["occurredAt"])


def test_rtp_aid_filter(workspace: Workspace, other: Workspace) -> None:
    api = workspace.api
    a, b = push(api, account("a.com", "hot"), account("b.com", "hot"))
    create(api, "Hot", HOT)
    mine = events(api, rtp_aid=a)
    assert [(e["type"], e["rtp_aid"]) for e in mine] == [
        ("account.created", a),
        ("segment.entered", a),
    ]
    assert [e["type"] for e in events(api, rtp_aid=b, type="segment.entered")] == [
        "segment.entered"
    ]
    assert events(other.api, rtp_aid=a) == []
    assert events(api, rtp_aid=UNKNOWN_ID) == []


def test_paging_never_repeats_or_skips(api: Api) -> None:
    push(api, *[account(f"d{i}.com", "hot") for i in range(6)])
    create(api, "Hot", HOT)
    everything = events(api)
    assert len(everything) == 12
    assert len(set(ids(everything))) == 12
    for limit in (1, 2, 5, 12, 13):
        walked: list[dict[str, Any]] = []
        data = page(api, limit=limit)
        pages = 1
        while True:
            assert len(data["data"]) <= limit
            walked.extend(data["data"])
            if not data["hasNextPage"]:
                break
            assert data["pollCursor"] == data["nextCursor"]
            data = page(api, cursor=data["nextCursor"], limit=limit)
            pages += 1
        assert ids(walked) == ids(everything), limit
        assert pages == -(-12 // limit)


def test_cursor_keeps_the_walk_filters(api: Api) -> None:
    push(api, *[account(f"d{i}.com", "hot") for i in range(4)])
    create(api, "Hot", HOT)
    first = page(api, type="segment.entered", limit=1)
    walked = list(first["data"])
    data = first
    while data["hasNextPage"]:
        data = page(api, cursor=data["nextCursor"], limit=1)
        walked.extend(data["data"])
    assert [e["type"] for e in walked] == ["segment.entered"] * 4


def test_poll_cursor_picks_up_only_newer_events(api: Api) -> None:
    push(api, account("a.com"), account("b.com"))
    data = page(api, limit=1)
    data = page(api, cursor=data["nextCursor"], limit=1)
    assert data["hasNextPage"] is False and data["nextCursor"] is None
    poll = data["pollCursor"]
    assert poll is not None
    # nothing new: an empty page that hands the same cursor back
    quiet = page(api, cursor=poll)
    assert quiet["data"] == [] and quiet["pollCursor"] == poll
    (c,) = push(api, account("c.com", "hot"))
    create(api, "Hot", HOT)
    fresh = page(api, cursor=poll)
    assert [(e["type"], e["rtp_aid"]) for e in fresh["data"]] == [
        ("account.created", c),
        ("segment.entered", c),
    ]
    again = page(api, cursor=fresh["pollCursor"])
    assert again["data"] == []


def test_poll_cursor_keeps_its_filter(api: Api) -> None:
    push(api, account("a.com", "hot"))
    create(api, "Hot", HOT)
    poll = page(api, type="segment.entered")["pollCursor"]
    push(api, account("b.com", "hot"), account("c.com"))
    create(api, "Also hot", HOT)
    fresh = page(api, cursor=poll)["data"]
    assert [e["type"] for e in fresh] == ["segment.entered"] * 2


def test_foreign_cursors_are_refused(workspace: Workspace, other: Workspace) -> None:
    api = workspace.api
    push(api, account("a.com"), account("b.com"))
    push(other.api, account("a.com"), account("b.com"))
    create(api, "S1", type="static")
    create(api, "S2", type="static")
    mine = page(api, limit=1)["nextCursor"]
    theirs = page(other.api, limit=1)["nextCursor"]
    segments_cursor = api.get("/segments", params={"limit": 1}).json()["data"]["nextCursor"]
    accounts_cursor = api.get("/accounts", params={"limit": 1}).json()["data"]["nextCursor"]
    assert mine and theirs and segments_cursor and accounts_cursor
    tampered = mine[:-3] + ("AAA" if mine[-3:] != "AAA" else "BBB")
    for bad in (theirs, segments_cursor, accounts_cursor, tampered, "abc"):
        business(api.get("/events", params={"cursor": bad}), 400, "Invalid cursor")
    business(other.api.get("/events", params={"cursor": mine}), 400, "Invalid cursor")
    assert len(page(api, cursor=mine)["data"]) == 1


def test_stage_and_segment_events_from_a_scoring_run(workspace: Workspace, engine: Any) -> None:
    api = workspace.api
    (a,) = push(api, account("a.com"))
    rule = {"field": "rtp_g2_intent_score", "op": "gt", "value": 0}
    sid = create(api, "Researching", rule)["segmentId"]
    pipeline.run_scoring(engine, workspace.id, full=True)  # sets the watermark
    signals(engine, workspace.id, "a.com", "g2", "pricing", 0, 1)
    summary = pipeline.run_scoring(engine, workspace.id, full=False)
    assert summary.kind == "incremental" and summary.segment_moves == 1
    got = events(api, rtp_aid=a)
    assert [(e["type"], e.get("cause")) for e in got] == [
        ("account.created", None),
        ("stage.changed", "full"),
        ("stage.changed", "incremental"),
        ("segment.entered", None),
    ]
    placed, moved = got[1], got[2]
    assert (placed["before"], placed["after"]) == ({"stage": None}, {"stage": "Unaware"})
    assert (moved["before"], moved["after"]) == ({"stage": "Unaware"}, {"stage": "Decision"})
    assert moved["stageSetVersion"] == 0 and "rule" not in moved
    # the rule that fired is the account's stage change (and the stage list's version)
    [change] = [c for c in api.get(f"/accounts/{a}/stage-changes").json()["data"]
                if c["to"] == "Decision"]  # fmt: skip
    assert change["rule"]["any"][0]["signal"] == {"source": "g2", "type": "pricing"}
    assert got[3]["segment"]["segmentId"] == sid
    assert api.get(f"/accounts/{a}").json()["data"]["rtp_journey_stage"] == "Decision"
    # an unchanged rerun records nothing new
    count = len(events(api))
    pipeline.run_scoring(engine, workspace.id, full=True)
    assert len(events(api)) == count
