"""E1 (GET /accounts, GET /accounts/{rtp_aid}), E3 (PUT), E4 (missing-external-ids), E5."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.api import Api, Workspace
from tests.support.data import acc, custom_field, segment
from tests.support.envelope import business

ITEM_TYPES: dict[str, tuple[type, ...]] = {
    "externalId": (str, type(None)),
    "name": (str,),
    "domain": (str,),
    "rtp_aid": (str,),
    "rtp_account_score": (int, float),
    "rtp_journey_stage": (str, type(None)),
    "rtp_website_intent_score": (int, float),
    "rtp_bombora_intent_score": (int, float),
    "rtp_g2_intent_score": (int, float),
    "rtp_advertising_activity_score": (int, float),
    "rtp_last_account_date": (str, type(None)),
    "customFields": (dict,),
    "segments": (list,),
}
UNKNOWN_ID = "0123456789abcdef01234567"


# ---- helpers ---------------------------------------------------------------------------


def push(api: Api, accounts: list[dict[str, Any]], **body: Any) -> list[dict[str, Any]]:
    r = api.post("/accounts", json={"accounts": accounts, **body})
    assert r.status_code == 200, r.text
    results = r.json()["data"]["results"]
    assert all(x["status"] in ("created", "updated") for x in results), results
    return list(results)


def push_domains(api: Api, *domains: str) -> list[str]:
    """Create accounts one per request, so their ids are in this order; return rtp_aids."""
    return [push(api, [acc(d)])[0]["rtp_aid"] for d in domains]


def page(api: Api, **params: Any) -> dict[str, Any]:
    r = api.get("/accounts", params=params)
    assert r.status_code == 200, r.text
    body = r.json()["data"]
    assert set(body) == {"data", "nextCursor", "hasNextPage", "syncTimestamp"}
    assert (body["nextCursor"] is None) == (body["hasNextPage"] is False)
    assert isinstance(body["hasNextPage"], bool)
    return dict(body)


def walk(api: Api, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(every item, every page) of one walk."""
    pages = [page(api, **params)]
    while pages[-1]["hasNextPage"]:
        pages.append(page(api, cursor=pages[-1]["nextCursor"], limit=params.get("limit", 100)))
        assert len(pages) < 1000
    return [i for p in pages for i in p["data"]], pages


def domains_of(items: list[dict[str, Any]]) -> list[str]:
    return [i["domain"] for i in items]


def delta(api: Api, since: str) -> list[str]:
    items, _ = walk(api, lastSync=since)
    return domains_of(items)


def sync_point(api: Api) -> str:
    _items, pages = walk(api, limit=1000)
    return str(pages[-1]["syncTimestamp"])


def item(api: Api, aid: str) -> dict[str, Any]:
    r = api.get(f"/accounts/{aid}")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def validation(r: httpx.Response, path: str, text: str | None = None) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["message"] == "Bad Request"
    assert "customMessage" not in body
    errors = body["data"]
    assert isinstance(errors, list) and errors
    hits = [e for e in errors if e["path"] == path]
    assert hits, errors
    assert set(hits[0]) == {"property", "path", "constraints"}
    if text is not None:
        assert text in hits[0]["constraints"].values(), hits[0]


def tamper(cursor: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-1] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


# ---- E1: items -------------------------------------------------------------------------


def test_item_fields_and_types(api: Api) -> None:
    tier = custom_field(api, "Tier", "singleSelection", ["A", "B"])
    note = custom_field(api, "Note", "multiLineText")
    push(api, [acc("https://www.Acme.com/", "Acme Inc", externalId="E1", customFields={tier: "A"})])
    data = page(api)["data"]
    assert len(data) == 1
    it = data[0]
    for field, types in ITEM_TYPES.items():
        assert field in it, field
        assert isinstance(it[field], types), (field, it[field])
    assert it["externalId"] == "E1"
    assert it["name"] == "Acme Inc"
    assert it["domain"] == "acme.com"
    assert it["customFields"] == {tier: "A", note: None}
    for score in ("rtp_account_score", "rtp_website_intent_score", "rtp_g2_intent_score"):
        assert 0 <= it[score] <= 100
    assert it["segments"] == []


def test_custom_fields_show_every_active_key_only(api: Api) -> None:
    keep = custom_field(api, "Keep", "singleLineText")
    gone = custom_field(api, "Gone", "singleLineText")
    [aid] = [r["rtp_aid"] for r in push(api, [acc("a.com", customFields={keep: "k", gone: "g"})])]
    assert item(api, aid)["customFields"] == {keep: "k", gone: "g"}
    r = api.delete(f"/accounts/custom-fields/{gone}")
    assert r.status_code == 200, r.text
    assert item(api, aid)["customFields"] == {keep: "k"}
    later = custom_field(api, "Later", "number")
    assert item(api, aid)["customFields"] == {keep: "k", later: None}


def test_segments_on_items(api: Api) -> None:
    [a, b] = push_domains(api, "a.com", "b.com")
    s1 = segment(api, "active", "Alpha")
    s2 = segment(api, "active", "Beta")
    draft = segment(api, "draft", "Draft one")
    for sid in (s1, s2, draft):
        r = api.post(f"/segments/{sid}/accounts", json={"rtp_aids": [a]})
        assert r.status_code == 200, r.text
    segs = item(api, a)["segments"]
    assert sorted(segs, key=lambda s: s["segmentId"]) == [
        {"segmentId": s1, "name": "Alpha"},
        {"segmentId": s2, "name": "Beta"},
    ]
    assert item(api, b)["segments"] == []
    r = api.patch(f"/segments/{s2}", json={"status": "archived"})
    assert r.status_code == 200, r.text
    assert item(api, a)["segments"] == [{"segmentId": s1, "name": "Alpha"}]


def test_get_one_account_equals_list_item(api: Api) -> None:
    custom_field(api, "Tier", "singleLineText")
    aids = push_domains(api, "one.com", "two.com")
    listed = {i["rtp_aid"]: i for i in page(api)["data"]}
    for aid in aids:
        r = api.get(f"/accounts/{aid}")
        assert r.status_code == 200
        assert r.json()["path"] == f"/api/v1/accounts/{aid}"
        assert r.json()["data"] == listed[aid]


@pytest.mark.parametrize(
    "bad", ["abc", "0" * 23, "0" * 25, "g" * 24, "0123456789abcdef0123456z", "acme.com"]
)
def test_get_one_malformed_id(api: Api, bad: str) -> None:
    business(api.get(f"/accounts/{bad}"), 400, "Invalid rtp_aid format")


def test_get_one_unknown_id(api: Api) -> None:
    push_domains(api, "a.com")
    business(api.get(f"/accounts/{UNKNOWN_ID}"), 404, f"Account '{UNKNOWN_ID}' not found")


# ---- E1: domains filter ----------------------------------------------------------------


@pytest.fixture
def three(api: Api) -> list[str]:
    return push_domains(api, "acme.com", "globex.com", "initech.com")


def test_domains_as_json_array(api: Api, three: list[str]) -> None:
    data = page(api, domains='["acme.com","https://www.globex.com/x"]')["data"]
    assert domains_of(data) == ["acme.com", "globex.com"]


def test_domains_as_comma_list(api: Api, three: list[str]) -> None:
    data = page(api, domains="WWW.Initech.com, acme.com ,unknown.com")["data"]
    assert domains_of(data) == ["acme.com", "initech.com"]


def test_domains_single_value(api: Api, three: list[str]) -> None:
    assert domains_of(page(api, domains="globex.com")["data"]) == ["globex.com"]


def test_domains_none_match(api: Api, three: list[str]) -> None:
    body = page(api, domains='["nobody.com"]')
    assert body["data"] == [] and body["hasNextPage"] is False


def test_domains_100_is_allowed(api: Api, three: list[str]) -> None:
    values = ["acme.com"] + [f"d{i}.com" for i in range(99)]
    assert domains_of(page(api, domains=json.dumps(values))["data"]) == ["acme.com"]
    assert domains_of(page(api, domains=",".join(values))["data"]) == ["acme.com"]


def test_domains_over_100_is_a_validation_error(api: Api, three: list[str]) -> None:
    values = [f"d{i}.com" for i in range(101)]
    validation(
        api.get("/accounts", params={"domains": json.dumps(values)}),
        "domains",
        "domains must contain no more than 100 elements",
    )
    validation(
        api.get("/accounts", params={"domains": ",".join(values)}),
        "domains",
        "domains must contain no more than 100 elements",
    )


@pytest.mark.parametrize(
    "raw", ['["acme.com"', "[acme.com]", '{"a": 1}', "[1, 2]", '["a.com", null]']
)
def test_domains_unparsable_is_a_validation_error(api: Api, raw: str) -> None:
    r = api.get("/accounts", params={"domains": raw})
    assert r.status_code == 400, r.text
    body = r.json()
    assert "customMessage" not in body
    assert body["data"][0]["property"] == "domains"


def test_domains_filter_holds_across_pages(api: Api) -> None:
    push_domains(api, "a.com", "b.com", "c.com", "d.com", "e.com")
    items, pages = walk(api, limit=1, domains='["a.com","c.com","e.com"]')
    assert domains_of(items) == ["a.com", "c.com", "e.com"]
    assert len(pages) == 3


# ---- E1: limit and cursor --------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["0", "1001", "-1", "abc", "1.5", "", "1e2", "100000000000000000000"]
)
def test_limit_out_of_range(api: Api, bad: str) -> None:
    validation(api.get("/accounts", params={"limit": bad}), "limit")
    r = api.get("/accounts", params={"limit": bad})
    assert r.json()["data"][0]["property"] == "limit"


@pytest.mark.parametrize("good", ["1", "1000", "50"])
def test_limit_in_range(api: Api, good: str) -> None:
    assert api.get("/accounts", params={"limit": good}).status_code == 200


def test_limit_defaults_to_100(api: Api) -> None:
    push(api, [acc(f"a{i}.com") for i in range(100)])
    push(api, [acc("last.com")])
    body = page(api)
    assert len(body["data"]) == 100
    assert body["hasNextPage"] is True
    rest = page(api, cursor=body["nextCursor"])
    assert domains_of(rest["data"]) == ["last.com"]
    assert rest["hasNextPage"] is False and rest["nextCursor"] is None


def test_walk_is_ascending_and_complete(api: Api) -> None:
    aids = push_domains(api, *(f"w{i}.com" for i in range(7)))
    items, pages = walk(api, limit=3)
    assert [len(p["data"]) for p in pages] == [3, 3, 1]
    assert [i["rtp_aid"] for i in items] == aids
    assert aids == sorted(aids)
    assert all(p["hasNextPage"] for p in pages[:-1])
    assert pages[-1]["hasNextPage"] is False and pages[-1]["nextCursor"] is None


def test_exact_page_boundary(api: Api) -> None:
    push_domains(api, "a.com", "b.com")
    body = page(api, limit=2)
    assert len(body["data"]) == 2
    assert body["hasNextPage"] is False
    assert body["nextCursor"] is None


def test_empty_workspace(api: Api) -> None:
    body = page(api)
    assert body["data"] == []
    assert body["hasNextPage"] is False and body["nextCursor"] is None
    datetime.fromisoformat(body["syncTimestamp"].replace("Z", "+00:00"))


@pytest.mark.parametrize("bad", ["garbage", "", "AAAA", "eyJhZnRlciI6IjAifQ", "%%%"])
def test_invalid_cursor(api: Api, bad: str) -> None:
    push_domains(api, "a.com")
    business(api.get("/accounts", params={"cursor": bad}), 400, "Invalid cursor")


def test_tampered_cursor(api: Api) -> None:
    push_domains(api, "a.com", "b.com", "c.com")
    cursor = page(api, limit=1)["nextCursor"]
    assert page(api, cursor=cursor, limit=1)["data"]
    business(api.get("/accounts", params={"cursor": tamper(cursor)}), 400, "Invalid cursor")
    business(api.get("/accounts", params={"cursor": cursor[:-2]}), 400, "Invalid cursor")
    business(api.get("/accounts", params={"cursor": cursor + "AA"}), 400, "Invalid cursor")


def test_cursor_of_another_workspace(workspace: Workspace, other: Workspace) -> None:
    push_domains(workspace.api, "a.com", "b.com")
    push_domains(other.api, "a.com", "b.com")
    cursor = page(workspace.api, limit=1)["nextCursor"]
    business(other.api.get("/accounts", params={"cursor": cursor}), 400, "Invalid cursor")


def test_cursor_of_another_list(api: Api) -> None:
    push_domains(api, "a.com", "b.com")
    segment(api)
    segment(api)
    seg_cursor = api.get("/segments", params={"limit": 1}).json()["data"]["nextCursor"]
    assert seg_cursor
    business(api.get("/accounts", params={"cursor": seg_cursor}), 400, "Invalid cursor")
    acc_cursor = page(api, limit=1)["nextCursor"]
    business(api.get("/segments", params={"cursor": acc_cursor}), 400, "Invalid cursor")


def test_every_page_has_the_same_sync_timestamp(api: Api) -> None:
    push_domains(api, "a.com", "b.com", "c.com", "d.com")
    first = page(api, limit=1)
    stamps = {first["syncTimestamp"]}
    cursor = first["nextCursor"]
    n = 0
    while cursor:
        # Writes during the walk must not move the walk's syncTimestamp.
        push(api, [acc("a.com", f"renamed {n}")], upsert=True)
        if n == 0:
            push(api, [acc("created-during-walk.com")])
        n += 1
        nxt = page(api, cursor=cursor, limit=1)
        stamps.add(nxt["syncTimestamp"])
        cursor = nxt["nextCursor"]
        assert n < 50
    assert len(stamps) == 1
    assert n == 4


def test_sync_timestamp_is_iso8601(api: Api) -> None:
    push_domains(api, "a.com")
    stamp = page(api)["syncTimestamp"]
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None
    assert abs(datetime.now(UTC) - parsed) < timedelta(minutes=5)


# ---- E1: lastSync ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["yesterday", "2024-13-01", "abc123", "2024-01-01T25:00:00Z", ""])
def test_invalid_last_sync(api: Api, bad: str) -> None:
    business(
        api.get("/accounts", params={"lastSync": bad}),
        400,
        "lastSync must be a valid ISO 8601 date string",
    )


def test_last_sync_in_the_past_and_future(api: Api) -> None:
    push_domains(api, "a.com", "b.com")
    assert domains_of(page(api, lastSync="2000-01-01T00:00:00Z")["data"]) == ["a.com", "b.com"]
    assert domains_of(page(api, lastSync="2000-01-01")["data"]) == ["a.com", "b.com"]
    assert domains_of(page(api, lastSync="2000-01-01T00:00:00+05:00")["data"]) == [
        "a.com",
        "b.com",
    ]
    assert page(api, lastSync="2999-01-01T00:00:00Z")["data"] == []


def test_last_sync_without_offset_is_utc(api: Api) -> None:
    push_domains(api, "a.com")
    now = datetime.now(UTC)
    before = (now - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S")
    after = (now + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S")
    assert domains_of(page(api, lastSync=before)["data"]) == ["a.com"]
    assert page(api, lastSync=after)["data"] == []


def test_delta_shows_only_changed_accounts(api: Api) -> None:
    push_domains(api, "a.com", "b.com", "c.com")
    since = sync_point(api)
    assert delta(api, since) == []
    push(api, [acc("b.com", "B renamed")], upsert=True)
    push(api, [acc("new.com")])
    assert delta(api, since) == ["b.com", "new.com"]


def test_delta_walk_keeps_last_sync_across_pages(api: Api) -> None:
    push_domains(api, *(f"x{i}.com" for i in range(5)))
    since = sync_point(api)
    for d in ("x0.com", "x2.com", "x4.com"):
        push(api, [acc(d, "changed")], upsert=True)
    items, pages = walk(api, lastSync=since, limit=1)
    assert domains_of(items) == ["x0.com", "x2.com", "x4.com"]
    assert len({p["syncTimestamp"] for p in pages}) == 1


def test_change_during_walk_is_caught_next_time(api: Api) -> None:
    aids = push_domains(api, "a.com", "b.com", "c.com")
    first = page(api, limit=1)
    assert first["data"][0]["rtp_aid"] == aids[0]
    # a.com is already behind the walk when it changes.
    push(api, [acc("a.com", "changed mid-walk")], upsert=True)
    rest_cursor = first["nextCursor"]
    last = first
    while rest_cursor:
        last = page(api, cursor=rest_cursor, limit=1)
        rest_cursor = last["nextCursor"]
    assert last["syncTimestamp"] == first["syncTimestamp"]
    assert "a.com" in delta(api, last["syncTimestamp"])


def test_custom_field_value_change_is_a_change(api: Api) -> None:
    key = custom_field(api, "Tier", "singleLineText")
    aids = push_domains(api, "a.com", "b.com")
    since = sync_point(api)
    r = api.put(f"/accounts/{aids[1]}", json={"customFields": {key: "gold"}})
    assert r.status_code == 200, r.text
    assert delta(api, since) == ["b.com"]
    since = sync_point(api)
    push(api, [acc("a.com", customFields={key: "silver"})], upsert=True)
    assert delta(api, since) == ["a.com"]


def test_external_id_change_is_a_change(api: Api) -> None:
    push_domains(api, "a.com", "b.com", "c.com")
    since = sync_point(api)
    r = api.patch(
        "/accounts/external-ids", json={"mappings": [{"domain": "c.com", "externalId": "C"}]}
    )
    assert r.status_code == 200, r.text
    assert delta(api, since) == ["c.com"]
    since = sync_point(api)
    push(api, [acc("a.com", externalId="A")], upsert=True)
    assert delta(api, since) == ["a.com"]
    # Moving C from c.com to b.com changes both.
    since = sync_point(api)
    r = api.patch(
        "/accounts/external-ids", json={"mappings": [{"domain": "b.com", "externalId": "C"}]}
    )
    assert r.status_code == 200, r.text
    assert delta(api, since) == ["b.com", "c.com"]


def test_active_segment_membership_is_a_change(api: Api) -> None:
    aids = push_domains(api, "a.com", "b.com", "c.com")
    sid = segment(api, "active")
    since = sync_point(api)
    r = api.post(f"/segments/{sid}/accounts", json={"rtp_aids": [aids[1]]})
    assert r.status_code == 200, r.text
    assert delta(api, since) == ["b.com"]
    since = sync_point(api)
    push(api, [acc("c.com")], upsert=True, segmentId=sid)
    assert delta(api, since) == ["c.com"]
    since = sync_point(api)
    r = api.request("DELETE", f"/segments/{sid}/accounts", json={"domains": ["b.com"]})
    assert r.status_code == 200, r.text
    assert delta(api, since) == ["b.com"]


def test_no_op_writes_are_not_changes(api: Api) -> None:
    key = custom_field(api, "Tier", "singleLineText")
    aids = push_domains(api, "a.com", "b.com")
    push(api, [acc("a.com", "Acme", externalId="A", customFields={key: "gold"})], upsert=True)
    sid = segment(api, "active")
    assert api.post(f"/segments/{sid}/accounts", json={"rtp_aids": [aids[0]]}).status_code == 200
    since = sync_point(api)
    # The same values again, every way they can be written.
    results = push(
        api, [acc("a.com", "Acme", externalId="A", customFields={key: "gold"})], upsert=True
    )
    assert results[0]["status"] == "updated"
    push(api, [acc("a.com", "Acme")], upsert=True)
    r = api.put(f"/accounts/{aids[0]}", json={"customFields": {key: "gold"}})
    assert r.status_code == 200
    r = api.patch(
        "/accounts/external-ids", json={"mappings": [{"domain": "a.com", "externalId": "A"}]}
    )
    assert r.json()["data"] == {"matched": 1, "updated": 0, "notFound": []}
    assert api.post(f"/segments/{sid}/accounts", json={"rtp_aids": [aids[0]]}).status_code == 200
    push(api, [acc("a.com", "Acme")], upsert=True, segmentId=sid)
    assert delta(api, since) == []


def test_failed_writes_are_not_changes(api: Api) -> None:
    key = custom_field(api, "Size", "number")
    aids = push_domains(api, "a.com", "b.com")
    since = sync_point(api)
    r = api.put(f"/accounts/{aids[0]}", json={"customFields": {key: "big"}})
    assert r.status_code == 400
    r = api.post("/accounts", json={"accounts": [acc("b.com", "B2")]})
    assert r.json()["data"]["results"][0]["status"] == "failed"
    assert delta(api, since) == []


# ---- E3: PUT /accounts/{rtp_aid} -------------------------------------------------------


@pytest.fixture
def cf(api: Api) -> dict[str, str]:
    return {
        "text": custom_field(api, "Tier", "singleLineText"),
        "num": custom_field(api, "Size", "number"),
        "sel": custom_field(api, "Band", "singleSelection", ["Low", "High"]),
        "multi": custom_field(api, "Tools", "multiSelection", ["X", "Y"]),
        "date": custom_field(api, "Renewal", "date"),
    }


def test_put_merges_custom_fields(api: Api, cf: dict[str, str]) -> None:
    [aid] = push_domains(api, "a.com")
    r = api.put(f"/accounts/{aid}", json={"customFields": {cf["text"]: "gold", cf["num"]: 5}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["statusCode"] == 200 and body["path"] == f"/api/v1/accounts/{aid}"
    assert body["data"] == {"message": "Account updated successfully"}
    r = api.put(
        f"/accounts/{aid}",
        json={"customFields": {cf["num"]: 7, cf["multi"]: ["X"], cf["date"]: "2025-01-01"}},
    )
    assert r.status_code == 200, r.text
    assert item(api, aid)["customFields"] == {
        cf["text"]: "gold",
        cf["num"]: 7,
        cf["sel"]: None,
        cf["multi"]: ["X"],
        cf["date"]: "2025-01-01",
    }
    r = api.put(f"/accounts/{aid}", json={"customFields": {cf["text"]: None}})
    assert r.status_code == 200
    assert item(api, aid)["customFields"][cf["text"]] is None
    assert item(api, aid)["customFields"][cf["num"]] == 7
    r = api.put(f"/accounts/{aid}", json={"customFields": {}})
    assert r.status_code == 200
    assert item(api, aid)["customFields"][cf["num"]] == 7


@pytest.mark.parametrize(
    "body",
    [
        {"name": "New"},
        {"customFields": {}, "name": "New"},
        {"customFields": {}, "externalId": "E"},
        {"customFields": {}, "domain": "b.com"},
        {"customFields": {}, "extra": None},
    ],
)
def test_put_rejects_other_properties(api: Api, cf: dict[str, str], body: dict[str, Any]) -> None:
    [aid] = push_domains(api, "a.com")
    body = {k: ({cf["text"]: "x"} if k == "customFields" else v) for k, v in body.items()}
    before = item(api, aid)
    business(api.put(f"/accounts/{aid}", json=body), 400, "Only customFields can be updated")
    assert item(api, aid) == before


@pytest.mark.parametrize(
    "kind,value",
    [
        ("text", 1),
        ("num", "1"),
        ("sel", "Medium"),
        ("multi", ["Z"]),
        ("multi", "X"),
        ("date", "someday"),
    ],
)
def test_put_wrong_type_names_the_key(api: Api, cf: dict[str, str], kind: str, value: Any) -> None:
    [aid] = push_domains(api, "a.com")
    before = item(api, aid)
    # A valid value next to the bad one is not written either.
    other = "num" if kind != "num" else "text"
    good = 3 if other == "num" else "ok"
    r = api.put(f"/accounts/{aid}", json={"customFields": {cf[other]: good, cf[kind]: value}})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["data"] is None
    assert cf[kind] in body["customMessage"]
    assert item(api, aid) == before


def test_put_unknown_key(api: Api, cf: dict[str, str]) -> None:
    [aid] = push_domains(api, "a.com")
    r = api.put(f"/accounts/{aid}", json={"customFields": {cf["text"]: "x", "MISSING_C": 1}})
    assert r.status_code == 400, r.text
    assert "MISSING_C" in r.json()["customMessage"]
    assert item(api, aid)["customFields"][cf["text"]] is None


def test_put_inactive_key(api: Api, cf: dict[str, str]) -> None:
    [aid] = push_domains(api, "a.com")
    assert api.delete(f"/accounts/custom-fields/{cf['text']}").status_code == 200
    r = api.put(f"/accounts/{aid}", json={"customFields": {cf["text"]: "x"}})
    assert r.status_code == 400, r.text
    assert cf["text"] in r.json()["customMessage"]


def test_put_unknown_account(api: Api, cf: dict[str, str]) -> None:
    r = api.put(f"/accounts/{UNKNOWN_ID}", json={"customFields": {cf["text"]: "x"}})
    business(r, 404, f"Account '{UNKNOWN_ID}' not found")


@pytest.mark.parametrize("bad", ["abc", "0" * 23, "z" * 24, "E-1"])
def test_put_malformed_id(api: Api, cf: dict[str, str], bad: str) -> None:
    r = api.put(f"/accounts/{bad}", json={"customFields": {cf["text"]: "x"}})
    business(r, 400, "Invalid rtp_aid format")


@pytest.mark.parametrize(
    "body,text",
    [
        ({}, "customFields should not be empty"),
        ({"customFields": "x"}, None),
        ({"customFields": ["x"]}, None),
        ({"customFields": None}, None),
    ],
)
def test_put_custom_fields_shape(api: Api, body: dict[str, Any], text: str | None) -> None:
    [aid] = push_domains(api, "a.com")
    validation(api.put(f"/accounts/{aid}", json=body), "customFields", text)


def test_crm_put_by_external_id(workspace: Workspace, cf: dict[str, str]) -> None:
    api, crm = workspace.api, workspace.crm
    [aid, other_aid] = [
        r["rtp_aid"] for r in push(api, [acc("a.com", externalId="CRM-1"), acc("b.com")])
    ]
    r = crm.put("/accounts/CRM-1", json={"customFields": {cf["text"]: "via crm"}})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"message": "Account updated successfully"}
    assert r.json()["path"] == "/api/v1/crm/accounts/CRM-1"
    assert item(api, aid)["customFields"][cf["text"]] == "via crm"
    assert item(api, other_aid)["customFields"][cf["text"]] is None
    # Under /crm the path names an externalId: an rtp_aid there is an unknown externalId.
    r = crm.put(f"/accounts/{aid}", json={"customFields": {cf["text"]: "x"}})
    business(r, 404, f"Account '{aid}' not found")
    r = crm.put("/accounts/CRM-404", json={"customFields": {cf["text"]: "x"}})
    business(r, 404, "Account 'CRM-404' not found")
    # Under /api/v1 the path names an rtp_aid.
    r = api.put("/accounts/CRM-1", json={"customFields": {cf["text"]: "x"}})
    business(r, 400, "Invalid rtp_aid format")
    r = crm.put("/accounts/CRM-1", json={"customFields": {cf["num"]: "x"}})
    assert r.status_code == 400 and cf["num"] in r.json()["customMessage"]
    r = crm.put("/accounts/CRM-1", json={"customFields": {}, "name": "x"})
    business(r, 400, "Only customFields can be updated")
    assert item(api, aid)["customFields"][cf["text"]] == "via crm"


def test_crm_put_after_external_id_moves(workspace: Workspace, cf: dict[str, str]) -> None:
    api, crm = workspace.api, workspace.crm
    [a, b] = [r["rtp_aid"] for r in push(api, [acc("a.com", externalId="E"), acc("b.com")])]
    r = api.patch(
        "/accounts/external-ids", json={"mappings": [{"domain": "b.com", "externalId": "E"}]}
    )
    assert r.status_code == 200
    assert crm.put("/accounts/E", json={"customFields": {cf["text"]: "b"}}).status_code == 200
    assert item(api, b)["customFields"][cf["text"]] == "b"
    assert item(api, a)["customFields"][cf["text"]] is None


# ---- E4: missing-external-ids ----------------------------------------------------------


def test_missing_external_ids(api: Api) -> None:
    push(api, [acc("first.com", "First")])
    push(api, [acc("mapped.com", "Mapped", externalId="M")])
    push(api, [acc("second.com", "Second"), acc("third.com", "Third")])
    r = api.get("/accounts/missing-external-ids")
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "/api/v1/accounts/missing-external-ids"
    assert r.json()["data"] == [
        {"name": "First", "domain": "first.com"},
        {"name": "Second", "domain": "second.com"},
        {"name": "Third", "domain": "third.com"},
    ]
    r = api.get("/accounts/missing-external-ids", params={"limit": 2})
    assert r.json()["data"] == [
        {"name": "First", "domain": "first.com"},
        {"name": "Second", "domain": "second.com"},
    ]


def test_missing_external_ids_tracks_mappings(api: Api) -> None:
    push(api, [acc("a.com", "A", externalId="E"), acc("b.com", "B")])
    r = api.get("/accounts/missing-external-ids")
    assert r.json()["data"] == [{"name": "B", "domain": "b.com"}]
    r = api.patch(
        "/accounts/external-ids", json={"mappings": [{"domain": "b.com", "externalId": "E"}]}
    )
    assert r.status_code == 200
    r = api.get("/accounts/missing-external-ids")
    assert r.json()["data"] == [{"name": "A", "domain": "a.com"}]


def test_missing_external_ids_default_limit_is_100(api: Api) -> None:
    push(api, [acc(f"m{i}.com") for i in range(100)])
    push(api, [acc("m-last.com")])
    r = api.get("/accounts/missing-external-ids")
    assert len(r.json()["data"]) == 100
    r = api.get("/accounts/missing-external-ids", params={"limit": 1000})
    assert len(r.json()["data"]) == 101


def test_missing_external_ids_empty(api: Api) -> None:
    r = api.get("/accounts/missing-external-ids")
    assert r.status_code == 200 and r.json()["data"] == []


@pytest.mark.parametrize("bad", ["0", "1001", "x", "-5"])
def test_missing_external_ids_limit(api: Api, bad: str) -> None:
    validation(api.get("/accounts/missing-external-ids", params={"limit": bad}), "limit")


# ---- E5: PATCH /accounts/external-ids --------------------------------------------------


def patch(api: Api, *pairs: tuple[str, str]) -> dict[str, Any]:
    r = api.patch(
        "/accounts/external-ids",
        json={"mappings": [{"domain": d, "externalId": e} for d, e in pairs]},
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def ext_ids(api: Api) -> dict[str, str | None]:
    items, _ = walk(api, limit=1000)
    return {i["domain"]: i["externalId"] for i in items}


def test_mappings_matched_updated_not_found(api: Api) -> None:
    push(api, [acc("a.com"), acc("b.com", externalId="B1"), acc("c.com", externalId="C1")])
    data = patch(
        api,
        ("https://www.A.com/x", "A1"),
        ("b.com", "B1"),
        ("c.com", "C2"),
        ("https://www.Missing.com/y", "M1"),
        ("also-missing.com", "M2"),
    )
    assert data == {
        "matched": 3,
        "updated": 2,
        "notFound": ["https://www.Missing.com/y", "also-missing.com"],
    }
    assert ext_ids(api) == {"a.com": "A1", "b.com": "B1", "c.com": "C2"}


def test_mapping_repeated_domain_last_wins(api: Api) -> None:
    push(api, [acc("a.com")])
    data = patch(api, ("a.com", "X1"), ("www.a.com", "X2"), ("A.COM", "X3"))
    assert data == {"matched": 1, "updated": 1, "notFound": []}
    assert ext_ids(api) == {"a.com": "X3"}


def test_mapping_moves_external_id(api: Api) -> None:
    push(api, [acc("old.com", externalId="E"), acc("new.com")])
    data = patch(api, ("new.com", "E"))
    assert data == {"matched": 1, "updated": 1, "notFound": []}
    assert ext_ids(api) == {"old.com": None, "new.com": "E"}


def test_mapping_swap(api: Api) -> None:
    push(api, [acc("a.com", externalId="X"), acc("b.com", externalId="Y")])
    data = patch(api, ("a.com", "Y"), ("b.com", "X"))
    assert data == {"matched": 2, "updated": 2, "notFound": []}
    assert ext_ids(api) == {"a.com": "Y", "b.com": "X"}


def test_mapping_same_external_id_to_two_domains(api: Api) -> None:
    """The later mapping takes the id; the earlier account is left without it."""
    push(api, [acc("a.com"), acc("b.com")])
    data = patch(api, ("a.com", "E"), ("b.com", "E"))
    assert data["matched"] == 2
    ids = ext_ids(api)
    assert ids["b.com"] == "E"
    assert ids["a.com"] is None


def test_mapping_all_not_found(api: Api) -> None:
    data = patch(api, ("nobody.com", "N"))
    assert data == {"matched": 0, "updated": 0, "notFound": ["nobody.com"]}


def test_mapping_100_is_the_limit(api: Api) -> None:
    push(api, [acc(f"m{i}.com") for i in range(100)])
    data = patch(api, *((f"m{i}.com", f"E{i}") for i in range(100)))
    assert data == {"matched": 100, "updated": 100, "notFound": []}


@pytest.mark.parametrize(
    "body,path,text",
    [
        ({}, "mappings", "mappings must be an array"),
        ({"mappings": "a.com"}, "mappings", "mappings must be an array"),
        ({"mappings": []}, "mappings", "mappings must contain at least 1 elements"),
        (
            {"mappings": [{"domain": f"d{i}.com", "externalId": str(i)} for i in range(101)]},
            "mappings",
            "mappings must contain no more than 100 elements",
        ),
        ({"mappings": [{"externalId": "E"}]}, "mappings.0.domain", "domain should not be empty"),
        (
            {"mappings": [{"domain": "a.com"}]},
            "mappings.0.externalId",
            "externalId should not be empty",
        ),
        (
            {"mappings": [{"domain": "a.com", "externalId": ""}]},
            "mappings.0.externalId",
            "externalId should not be empty",
        ),
        (
            {"mappings": [{"domain": "a.com", "externalId": 5}]},
            "mappings.0.externalId",
            "externalId must be a string",
        ),
        (
            {"mappings": [{"domain": 5, "externalId": "E"}]},
            "mappings.0.domain",
            "domain must be a string",
        ),
        (
            {
                "mappings": [
                    {"domain": "a.com", "externalId": "A"},
                    {"domain": "no dot", "externalId": "E"},
                ]
            },
            "mappings.1.domain",
            "domain must be a valid domain name",
        ),
    ],
)
def test_mapping_validation(api: Api, body: dict[str, Any], path: str, text: str) -> None:
    push(api, [acc("a.com")])
    validation(api.patch("/accounts/external-ids", json=body), path, text)
    assert ext_ids(api) == {"a.com": None}


def test_mapping_chain(api: Api) -> None:
    """a gives X to b and takes Y in the same request."""
    push(api, [acc("a.com", externalId="X"), acc("b.com")])
    data = patch(api, ("b.com", "X"), ("a.com", "Y"))
    assert data == {"matched": 2, "updated": 2, "notFound": []}
    assert ext_ids(api) == {"a.com": "Y", "b.com": "X"}


def test_mapping_is_visible_in_delta_and_missing_list(api: Api) -> None:
    push(api, [acc("a.com", externalId="E"), acc("b.com")])
    since = sync_point(api)
    patch(api, ("b.com", "E"))
    assert delta(api, since) == ["a.com", "b.com"]
    r = api.get("/accounts/missing-external-ids")
    assert r.json()["data"] == [{"name": "Acme", "domain": "a.com"}]


# ---- more delta cases ------------------------------------------------------------------


def test_active_segment_rename_and_status_are_changes(api: Api) -> None:
    aids = push_domains(api, "in.com", "out.com")
    sid = segment(api, "active", "Before")
    assert api.post(f"/segments/{sid}/accounts", json={"rtp_aids": [aids[0]]}).status_code == 200
    since = sync_point(api)
    r = api.patch(f"/segments/{sid}", json={"name": "After"})
    assert r.status_code == 200, r.text
    assert delta(api, since) == ["in.com"]
    assert item(api, aids[0])["segments"] == [{"segmentId": sid, "name": "After"}]
    since = sync_point(api)
    assert api.patch(f"/segments/{sid}", json={"status": "draft"}).status_code == 200
    assert delta(api, since) == ["in.com"]
    assert item(api, aids[0])["segments"] == []
    since = sync_point(api)
    assert api.patch(f"/segments/{sid}", json={"status": "active"}).status_code == 200
    assert delta(api, since) == ["in.com"]


def test_hiding_and_showing_a_custom_field_value_is_a_change(api: Api) -> None:
    key = custom_field(api, "Tier", "singleLineText")
    push(api, [acc("valued.com", customFields={key: "gold"})])
    since = sync_point(api)
    assert api.delete(f"/accounts/custom-fields/{key}").status_code == 200
    assert "valued.com" in delta(api, since)
    since = sync_point(api)
    assert custom_field(api, "Tier", "singleLineText") == key
    assert "valued.com" in delta(api, since)
    assert listed_cf(api, "valued.com") == {key: "gold"}


def listed_cf(api: Api, domain: str) -> dict[str, Any]:
    items, _ = walk(api, limit=1000)
    return dict(next(i for i in items if i["domain"] == domain)["customFields"])


def test_last_sync_and_domains_together(api: Api) -> None:
    push_domains(api, "a.com", "b.com", "c.com")
    since = sync_point(api)
    push(api, [acc("a.com", "A2"), acc("b.com", "B2")], upsert=True)
    got = page(api, lastSync=since, domains='["b.com","c.com"]')["data"]
    assert domains_of(got) == ["b.com"]
