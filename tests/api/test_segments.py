"""E10 (GET /segments) and the segment extensions: create, read, patch, members
(spec sections 5, 8, 9 E1/E10 and 10)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.api import Api, Workspace
from tests.support.data import get_account
from tests.support.segments import get_segment, patch

ID_RE = re.compile(r"^[0-9a-f]{24}$")
NOT_OPEN = "Segment '{}' is not active or draft and cannot accept new members"


# ---- helpers ----------------------------------------------------------------------------


def create(api: Api, name: str, **fields: Any) -> dict[str, Any]:
    r = api.post("/segments", json={"name": name, **fields})
    assert r.status_code == 201, r.text
    return dict(r.json()["data"])


def sid_of(api: Api, name: str, status: str = "active") -> str:
    return str(create(api, name, type="static", status=status)["segmentId"])


def push_accounts(api: Api, *domains: str) -> list[str]:
    r = api.post("/accounts", json={"accounts": [{"domain": d, "name": d} for d in domains]})
    assert r.status_code == 200, r.text
    results = r.json()["data"]["results"]
    assert [x["status"] for x in results] == ["created"] * len(domains), results
    return [str(x["rtp_aid"]) for x in results]


def add(api: Api, sid: str, **body: Any) -> dict[str, Any]:
    r = api.post(f"/segments/{sid}/accounts", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def remove(api: Api, sid: str, **body: Any) -> dict[str, Any]:
    r = api.delete(f"/segments/{sid}/accounts", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def list_page(api: Api, **params: Any) -> dict[str, Any]:
    r = api.get("/segments", params=params)
    assert r.status_code == 200, r.text
    page = r.json()["data"]
    assert set(page) == {"data", "nextCursor", "hasNextPage", "syncTimestamp"}
    assert (page["nextCursor"] is None) == (not page["hasNextPage"])
    return dict(page)


def walk_pages(api: Api, path: str, **params: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Every page of a list; its items and each page's syncTimestamp."""
    items: list[dict[str, Any]] = []
    stamps: list[str] = []
    query = dict(params)
    while True:
        r = api.get(path, params=query)
        assert r.status_code == 200, r.text
        page = r.json()["data"]
        assert (page["nextCursor"] is None) == (not page["hasNextPage"])
        items.extend(page["data"])
        stamps.append(page["syncTimestamp"])
        if not page["hasNextPage"]:
            return items, stamps
        query = {"cursor": page["nextCursor"], "limit": params.get("limit", 100)}


def walk_accounts(api: Api, **params: Any) -> tuple[dict[str, dict[str, Any]], str]:
    items, stamps = walk_pages(api, "/accounts", limit=100, **params)
    return {i["rtp_aid"]: i for i in items}, stamps[0]


def bad_request(r: Any, message: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["message"] == "Bad Request"
    assert body["customMessage"] == message
    assert body["data"] is None


def not_found(r: Any, message: str) -> None:
    assert r.status_code == 404, r.text
    body = r.json()
    assert body["message"] == "Not Found"
    assert body["customMessage"] == message
    assert body["data"] is None


def validation_paths(r: Any) -> list[str]:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["message"] == "Bad Request" and "customMessage" not in body
    return [d["path"] for d in body["data"]]


def all_segments(api: Api) -> list[dict[str, Any]]:
    return list(list_page(api, type="all", status="active,draft,archived")["data"])


# ---- POST /segments ---------------------------------------------------------------------


def test_create_static_segment(api: Api) -> None:
    r = api.post("/segments", json={"name": "Tier 1", "type": "static", "status": "draft"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["statusCode"] == 201 and body["path"] == "/api/v1/segments"
    data = body["data"]
    assert ID_RE.match(data["segmentId"])
    assert data == {
        "segmentId": data["segmentId"],
        "name": "Tier 1",
        "type": "static",
        "status": "draft",
        "rules": None,
        "memberCount": 0,
    }
    assert get_segment(api, data["segmentId"]) == data


def test_create_defaults_to_static_active(api: Api) -> None:
    # Implementation's choice: type and status are optional, defaulting to static/active.
    data = create(api, "  Padded  ")
    assert (data["name"], data["type"], data["status"]) == ("Padded", "static", "active")


def test_segment_ids_are_time_ordered(api: Api) -> None:
    ids = [sid_of(api, f"S{i}") for i in range(5)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5


def test_a_dynamic_segment_needs_rules(api: Api) -> None:
    r = api.post("/segments", json={"name": "D", "type": "dynamic"})
    assert validation_paths(r) == ["rules"]
    assert all_segments(api) == []


def test_rules_on_a_static_segment_are_refused(api: Api) -> None:
    r = api.post("/segments", json={"name": "S", "type": "static", "rules": {"all": []}})
    assert validation_paths(r) == ["rules"]
    assert all_segments(api) == []


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 5}, "name"),
        ({"name": "S", "type": "smart"}, "type"),
        ({"name": "S", "status": "live"}, "status"),
    ],
)
def test_create_validation(api: Api, body: dict[str, Any], path: str) -> None:
    assert validation_paths(api.post("/segments", json=body)) == [path]
    assert all_segments(api) == []


def test_create_validation_texts(api: Api) -> None:
    r = api.post("/segments", json={"name": " ", "status": "live"})
    assert r.status_code == 400
    by_path = {d["path"]: d["constraints"] for d in r.json()["data"]}
    assert by_path == {
        "name": {"isNotEmpty": "name should not be empty"},
        "status": {"isIn": "status must be one of the following values: draft, active, archived"},
    }


# ---- GET /segments (E10) ----------------------------------------------------------------


def test_list_defaults_to_active_and_draft_static_segments(api: Api) -> None:
    active = sid_of(api, "Active", "active")
    draft = sid_of(api, "Draft", "draft")
    sid_of(api, "Archived", "archived")
    r = api.get("/segments")
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "/api/v1/segments"
    page = r.json()["data"]
    assert page["data"] == [
        {"segmentId": active, "name": "Active", "status": "active"},
        {"segmentId": draft, "name": "Draft", "status": "draft"},
    ]
    assert page["hasNextPage"] is False and page["nextCursor"] is None
    assert isinstance(page["syncTimestamp"], str)


def test_list_is_empty_for_a_new_workspace(api: Api) -> None:
    assert list_page(api)["data"] == []


def test_type_and_status_widen_the_list_and_add_type(api: Api) -> None:
    active = sid_of(api, "A", "active")
    draft = sid_of(api, "D", "draft")
    archived = sid_of(api, "X", "archived")
    a, d, x = (
        {"segmentId": active, "name": "A", "status": "active", "type": "static"},
        {"segmentId": draft, "name": "D", "status": "draft", "type": "static"},
        {"segmentId": archived, "name": "X", "status": "archived", "type": "static"},
    )
    assert list_page(api, type="all")["data"] == [a, d]
    assert list_page(api, type="static")["data"] == [a, d]
    assert list_page(api, type="dynamic")["data"] == []
    assert list_page(api, status="archived")["data"] == [x]
    assert list_page(api, status="active,archived")["data"] == [a, x]
    assert list_page(api, status="draft")["data"] == [d]
    assert list_page(api, type="all", status="active,draft,archived")["data"] == [a, d, x]


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"type": "smart"}, "type"),
        ({"status": "live"}, "status"),
        ({"status": "active,x"}, "status"),
    ],
)
def test_bad_type_or_status_is_a_validation_error(
    api: Api, params: dict[str, str], path: str
) -> None:
    assert validation_paths(api.get("/segments", params=params)) == [path]


def test_list_pages_with_limit_and_cursor(api: Api) -> None:
    ids = [sid_of(api, f"S{i}", "draft" if i % 2 else "active") for i in range(5)]
    sid_of(api, "gone", "archived")
    first = list_page(api, limit=2)
    assert [s["segmentId"] for s in first["data"]] == ids[:2]
    assert first["hasNextPage"] is True
    items, stamps = walk_pages(api, "/segments", limit=2)
    assert [s["segmentId"] for s in items] == ids
    assert len(stamps) == 3 and len(set(stamps)) == 1
    assert all(set(s) == {"segmentId", "name", "status"} for s in items)


def test_cursor_keeps_the_walk_filters(api: Api) -> None:
    archived = [sid_of(api, f"X{i}", "archived") for i in range(3)]
    sid_of(api, "A", "active")
    items, _ = walk_pages(api, "/segments", limit=1, status="archived")
    assert [s["segmentId"] for s in items] == archived
    assert all(s["type"] == "static" for s in items)


@pytest.mark.parametrize("limit", ["0", "1001", "abc", "-1", "2.5"])
def test_bad_limit(api: Api, limit: str) -> None:
    r = api.get("/segments", params={"limit": limit})
    assert validation_paths(r) == ["limit"]
    assert r.json()["data"][0]["property"] == "limit"


def test_invalid_cursors(workspace: Workspace, other: Workspace) -> None:
    api = workspace.api
    for i in range(3):
        sid_of(api, f"S{i}")
        sid_of(other.api, f"T{i}")
    push_accounts(api, "a.com", "b.com")
    mine = list_page(api, limit=1)["nextCursor"]
    theirs = list_page(other.api, limit=1)["nextCursor"]
    accounts_cursor = api.get("/accounts", params={"limit": 1}).json()["data"]["nextCursor"]
    assert mine and theirs and accounts_cursor
    tampered = mine[:-3] + ("AAA" if mine[-3:] != "AAA" else "BBB")
    for bad in ["abc", "", "%%%", theirs, accounts_cursor, tampered, mine[5:]]:
        bad_request(api.get("/segments", params={"cursor": bad}), "Invalid cursor")
    assert api.get("/segments", params={"cursor": mine}).status_code == 200


def test_segments_are_per_workspace(workspace: Workspace, other: Workspace) -> None:
    mine = sid_of(workspace.api, "Mine")
    assert list_page(other.api)["data"] == []
    not_found(other.api.get(f"/segments/{mine}"), f"Segment '{mine}' not found")
    not_found(
        other.api.patch(f"/segments/{mine}", json={"name": "x"}), f"Segment '{mine}' not found"
    )
    not_found(other.api.get(f"/segments/{mine}/accounts"), f"Segment '{mine}' not found")
    r = other.api.post(f"/segments/{mine}/accounts", json={"domains": ["a.com"]})
    assert r.status_code == 404, r.text
    assert get_segment(workspace.api, mine)["name"] == "Mine"


# ---- GET /segments/{id} -----------------------------------------------------------------


def test_get_segment_errors(api: Api) -> None:
    # The spec's section 8 names `Invalid rtp_aid format`; for a segment id the
    # implementation says `Invalid segmentId format`, which this test accepts.
    for bad in ["abc", "0" * 23, "0" * 25, "G" * 24, "ABCDEF0123456789ABCDEF01"]:
        bad_request(api.get(f"/segments/{bad}"), "Invalid segmentId format")
    unknown = "0123456789abcdef01234567"
    not_found(api.get(f"/segments/{unknown}"), f"Segment '{unknown}' not found")


def test_segment_id_with_trailing_newline_is_malformed(api: Api) -> None:
    # 25 characters (24 hex and a newline) are not 24 hex characters: 400, not 404.
    sid = sid_of(api, "S")
    bad_request(api.get(f"/segments/{sid}%0A"), "Invalid segmentId format")
    bad_request(api.patch(f"/segments/{sid}%0A", json={"name": "x"}), "Invalid segmentId format")


def test_get_segment_counts_members(api: Api) -> None:
    sid = sid_of(api, "S")
    aids = push_accounts(api, "a.com", "b.com", "c.com")
    add(api, sid, rtp_aids=aids[:2])
    assert get_segment(api, sid)["memberCount"] == 2


# ---- PATCH /segments/{id} ---------------------------------------------------------------


def test_patch_renames_and_changes_status(api: Api) -> None:
    sid = sid_of(api, "Old", "draft")
    data = patch(api, sid, name="  New  ")
    assert data == {
        "segmentId": sid,
        "name": "New",
        "type": "static",
        "status": "draft",
        "rules": None,
        "memberCount": 0,
    }
    assert patch(api, sid, status="active")["status"] == "active"
    assert get_segment(api, sid) | {} == data | {"status": "active"}
    assert list_page(api)["data"] == [{"segmentId": sid, "name": "New", "status": "active"}]
    patch(api, sid, status="archived")
    assert list_page(api)["data"] == []
    assert get_segment(api, sid)["status"] == "archived"


def test_patch_errors(api: Api) -> None:
    bad_request(api.patch("/segments/nope", json={"name": "x"}), "Invalid segmentId format")
    unknown = "0123456789abcdef01234567"
    not_found(
        api.patch(f"/segments/{unknown}", json={"name": "x"}), f"Segment '{unknown}' not found"
    )
    sid = sid_of(api, "Keep")
    assert validation_paths(api.patch(f"/segments/{sid}", json={"name": "  "})) == ["name"]
    assert validation_paths(api.patch(f"/segments/{sid}", json={"status": "live"})) == ["status"]
    assert validation_paths(api.patch(f"/segments/{sid}", json={"rules": {"all": []}})) == ["rules"]
    assert get_segment(api, sid)["name"] == "Keep"
    assert get_segment(api, sid)["status"] == "active"


def test_renaming_an_active_segment_shows_in_items_and_delta_sync(api: Api) -> None:
    sid = sid_of(api, "Before")
    members = push_accounts(api, "a.com", "b.com")
    (outsider,) = push_accounts(api, "c.com")
    add(api, sid, rtp_aids=members)
    _, sync = walk_accounts(api)
    quiet, _ = walk_accounts(api, lastSync=sync)
    assert quiet == {}
    patch(api, sid, name="After")
    changed, _ = walk_accounts(api, lastSync=sync)
    assert sorted(changed) == sorted(members)
    for aid in members:
        assert changed[aid]["segments"] == [{"segmentId": sid, "name": "After"}]
        assert get_account(api, aid)["segments"] == [{"segmentId": sid, "name": "After"}]
    assert get_account(api, outsider)["segments"] == []


def test_status_changes_show_in_items_and_delta_sync(api: Api) -> None:
    sid = sid_of(api, "S", "draft")
    (member,) = push_accounts(api, "a.com")
    add(api, sid, rtp_aids=[member])
    assert get_account(api, member)["segments"] == []
    _, sync = walk_accounts(api)

    patch(api, sid, status="active")
    changed, sync = walk_accounts(api, lastSync=sync)
    assert list(changed) == [member]
    assert changed[member]["segments"] == [{"segmentId": sid, "name": "S"}]

    patch(api, sid, status="archived")
    changed, _ = walk_accounts(api, lastSync=sync)
    assert list(changed) == [member]
    assert changed[member]["segments"] == []


# ---- the `segments` field of account items ----------------------------------------------


def test_item_segments_list_only_active_segments(api: Api) -> None:
    (aid,) = push_accounts(api, "a.com")
    s1 = sid_of(api, "One")
    s2 = sid_of(api, "Two")
    draft = sid_of(api, "Draft", "draft")
    retired = sid_of(api, "Retired")
    for sid in (s1, s2, draft, retired):
        add(api, sid, rtp_aids=[aid])
    patch(api, retired, status="archived")
    expected = [{"segmentId": s1, "name": "One"}, {"segmentId": s2, "name": "Two"}]
    assert get_account(api, aid)["segments"] == expected
    items, _ = walk_accounts(api)
    assert items[aid]["segments"] == expected


def test_push_with_segment_id_joins_the_segment(api: Api) -> None:
    sid = sid_of(api, "Imported")
    r = api.post(
        "/accounts", json={"segmentId": sid, "accounts": [{"domain": "a.com", "name": "A"}]}
    )
    assert r.status_code == 200, r.text
    aid = r.json()["data"]["results"][0]["rtp_aid"]
    assert get_account(api, aid)["segments"] == [{"segmentId": sid, "name": "Imported"}]
    assert get_segment(api, sid)["memberCount"] == 1


# ---- members ----------------------------------------------------------------------------


def test_add_members_by_rtp_aid_and_domain(api: Api) -> None:
    sid = sid_of(api, "S")
    a, b, c = push_accounts(api, "a.com", "b.com", "eu.c.com")
    missing_id = "0123456789abcdef01234567"
    assert add(
        api, sid, rtp_aids=[a, missing_id], domains=["https://www.B.com/path", "nope.com"]
    ) == {
        "added": 2,
        "alreadyMembers": 0,
        "notFound": [missing_id, "nope.com"],
    }
    assert add(api, sid, rtp_aids=[a], domains=["eu.c.com"]) == {
        "added": 1,
        "alreadyMembers": 1,
        "notFound": [],
    }
    assert get_segment(api, sid)["memberCount"] == 3
    for aid in (a, b, c):
        assert get_account(api, aid)["segments"] == [{"segmentId": sid, "name": "S"}]


def test_same_account_twice_in_one_request_counts_once(api: Api) -> None:
    sid = sid_of(api, "S")
    (a,) = push_accounts(api, "a.com")
    assert add(api, sid, rtp_aids=[a, a], domains=["a.com"]) == {
        "added": 1,
        "alreadyMembers": 0,
        "notFound": [],
    }
    assert get_segment(api, sid)["memberCount"] == 1


def test_remove_members(api: Api) -> None:
    sid = sid_of(api, "S")
    a, b, c = push_accounts(api, "a.com", "b.com", "c.com")
    add(api, sid, rtp_aids=[a, b])
    missing_id = "0123456789abcdef01234567"
    assert remove(api, sid, rtp_aids=[a, c, missing_id], domains=["www.b.com", "nope.com"]) == {
        "removed": 2,
        "notMembers": 1,
        "notFound": [missing_id, "nope.com"],
    }
    assert get_segment(api, sid)["memberCount"] == 0
    assert get_account(api, a)["segments"] == []
    assert remove(api, sid, rtp_aids=[a]) == {"removed": 0, "notMembers": 1, "notFound": []}


def test_other_workspaces_accounts_are_not_found(workspace: Workspace, other: Workspace) -> None:
    sid = sid_of(workspace.api, "S")
    (theirs,) = push_accounts(other.api, "a.com")
    assert add(workspace.api, sid, rtp_aids=[theirs], domains=["a.com"]) == {
        "added": 0,
        "alreadyMembers": 0,
        "notFound": [theirs, "a.com"],
    }


def test_membership_changes_show_in_delta_sync(api: Api) -> None:
    sid = sid_of(api, "S")
    a, b = push_accounts(api, "a.com", "b.com")
    _, sync = walk_accounts(api)
    add(api, sid, rtp_aids=[a])
    changed, sync = walk_accounts(api, lastSync=sync)
    assert list(changed) == [a]
    assert changed[a]["segments"] == [{"segmentId": sid, "name": "S"}]
    remove(api, sid, rtp_aids=[a])
    changed, _ = walk_accounts(api, lastSync=sync)
    assert list(changed) == [a]
    assert changed[a]["segments"] == []
    assert b not in changed


def test_archived_segment_cannot_accept_members(api: Api) -> None:
    sid = sid_of(api, "Old", "archived")
    (a,) = push_accounts(api, "a.com")
    bad_request(api.post(f"/segments/{sid}/accounts", json={"rtp_aids": [a]}), NOT_OPEN.format(sid))
    assert get_segment(api, sid)["memberCount"] == 0
    r = api.post(
        "/accounts", json={"segmentId": sid, "accounts": [{"domain": "b.com", "name": "B"}]}
    )
    bad_request(r, NOT_OPEN.format(sid))
    assert api.get("/accounts", params={"domains": "b.com"}).json()["data"]["data"] == []


def test_draft_segment_accepts_members(api: Api) -> None:
    sid = sid_of(api, "Draft", "draft")
    (a,) = push_accounts(api, "a.com")
    assert add(api, sid, rtp_aids=[a]) == {"added": 1, "alreadyMembers": 0, "notFound": []}
    assert get_segment(api, sid)["memberCount"] == 1


@pytest.mark.parametrize(
    "body",
    [{}, {"rtp_aids": []}, {"domains": []}, {"rtp_aids": [], "domains": []}],
    ids=["none", "empty-ids", "empty-domains", "both-empty"],
)
def test_members_body_needs_at_least_one_identifier(api: Api, body: dict[str, Any]) -> None:
    sid = sid_of(api, "S")
    r = api.post(f"/segments/{sid}/accounts", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["message"] == "Bad Request"
    assert isinstance(r.json()["data"], list) and r.json()["data"]


def test_members_limit_is_1000_together(api: Api) -> None:
    sid = sid_of(api, "S")
    ids = [f"{i:024x}" for i in range(1, 1001)]
    domains = [f"d{i}.example.com" for i in range(1001)]
    ok = add(api, sid, rtp_aids=ids[:600], domains=domains[:400])
    assert ok["added"] == 0 and len(ok["notFound"]) == 1000
    for body in (
        {"rtp_aids": ids[:600], "domains": domains[:401]},
        {"rtp_aids": [*ids, "f" * 24]},
        {"domains": domains},
    ):
        r = api.post(f"/segments/{sid}/accounts", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["message"] == "Bad Request"
        r = api.delete(f"/segments/{sid}/accounts", json=body)
        assert r.status_code == 400, r.text


def test_members_body_shape_errors(api: Api) -> None:
    sid = sid_of(api, "S")
    (a,) = push_accounts(api, "a.com")
    assert validation_paths(
        api.post(f"/segments/{sid}/accounts", json={"rtp_aids": [a, "short"]})
    ) == ["rtp_aids.1"]
    assert validation_paths(
        api.post(f"/segments/{sid}/accounts", json={"domains": ["a.com", "not a domain"]})
    ) == ["domains.1"]
    assert validation_paths(api.post(f"/segments/{sid}/accounts", json={"rtp_aids": a})) == [
        "rtp_aids"
    ]
    assert get_segment(api, sid)["memberCount"] == 0


def test_members_endpoints_path_errors(api: Api) -> None:
    (a,) = push_accounts(api, "a.com")
    unknown = "0123456789abcdef01234567"
    for method in ("POST", "DELETE"):
        r = api.request(method, f"/segments/{unknown}/accounts", json={"rtp_aids": [a]})
        not_found(r, f"Segment '{unknown}' not found")
        r = api.request(method, "/segments/bad/accounts", json={"rtp_aids": [a]})
        bad_request(r, "Invalid segmentId format")
    bad_request(api.get("/segments/bad/accounts"), "Invalid segmentId format")
    not_found(api.get(f"/segments/{unknown}/accounts"), f"Segment '{unknown}' not found")


# ---- GET /segments/{id}/accounts --------------------------------------------------------


def test_members_list_in_e1_shape_and_paginated(api: Api) -> None:
    sid = sid_of(api, "S")
    aids = push_accounts(api, *(f"m{i}.com" for i in range(5)))
    push_accounts(api, "outsider.com")
    add(api, sid, domains=[f"m{i}.com" for i in (4, 0, 2, 1, 3)])
    r = api.get(f"/segments/{sid}/accounts", params={"limit": 2})
    assert r.status_code == 200, r.text
    page = r.json()["data"]
    assert set(page) == {"data", "nextCursor", "hasNextPage", "syncTimestamp"}
    assert page["hasNextPage"] is True and len(page["data"]) == 2
    items, stamps = walk_pages(api, f"/segments/{sid}/accounts", limit=2)
    assert [i["rtp_aid"] for i in items] == sorted(aids)
    assert len(set(stamps)) == 1 and len(stamps) == 3
    for item in items:
        assert item == get_account(api, item["rtp_aid"])
        assert item["segments"] == [{"segmentId": sid, "name": "S"}]


def test_members_list_of_empty_segment(api: Api) -> None:
    sid = sid_of(api, "Empty")
    push_accounts(api, "a.com")
    r = api.get(f"/segments/{sid}/accounts")
    assert r.status_code == 200, r.text
    page = r.json()["data"]
    assert page["data"] == [] and page["hasNextPage"] is False and page["nextCursor"] is None


def test_members_list_refuses_foreign_cursors(api: Api) -> None:
    s1 = sid_of(api, "One")
    s2 = sid_of(api, "Two")
    aids = push_accounts(api, "a.com", "b.com", "c.com")
    add(api, s1, rtp_aids=aids)
    add(api, s2, rtp_aids=aids)
    cursor = api.get(f"/segments/{s1}/accounts", params={"limit": 1}).json()["data"]["nextCursor"]
    assert cursor
    assert api.get(f"/segments/{s1}/accounts", params={"cursor": cursor}).status_code == 200
    bad_request(api.get(f"/segments/{s2}/accounts", params={"cursor": cursor}), "Invalid cursor")
    bad_request(api.get("/segments", params={"cursor": cursor}), "Invalid cursor")
    bad_request(api.get(f"/segments/{s1}/accounts", params={"cursor": "xyz"}), "Invalid cursor")
    assert validation_paths(api.get(f"/segments/{s1}/accounts", params={"limit": "0"})) == ["limit"]
