"""Section 2 tenancy: a second workspace's key can neither read, change nor detect the first
workspace's records, through any endpoint, cursor or id; an id from another workspace
behaves exactly as an unknown id."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.api import Api, Workspace
from tests.support.data import custom_field, listed, segment

UNKNOWN_ID = "0123456789abcdef01234567"
UNKNOWN_SEGMENT = "0123456789abcdef0123abcd"


# ---- helpers ---------------------------------------------------------------------------


def push(api: Api, accounts: list[dict[str, Any]], **body: Any) -> list[dict[str, Any]]:
    r = api.post("/accounts", json={"accounts": accounts, **body})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["results"])


def same_answer(a: httpx.Response, b: httpx.Response, a_id: str, b_id: str) -> None:
    """Two responses that differ only by the id they name (and the timestamp)."""
    assert a.status_code == b.status_code, (a.text, b.text)
    ja, jb = a.json(), b.json()
    for j in (ja, jb):
        j.pop("timestamp", None)
    text_a = str(ja).replace(a_id, "<id>")
    text_b = str(jb).replace(b_id, "<id>")
    assert text_a == text_b


class World:
    """Workspace A with data; workspace B, whose key must not reach it."""

    def __init__(self, a: Workspace, b: Workspace):
        self.a, self.b = a, b
        self.key = custom_field(a.api, "Tier")
        self.seg = segment(a.api, name="A's list")
        results = push(
            a.api,
            [
                {
                    "domain": "acme.com",
                    "name": "Acme of A",
                    "externalId": "EXT-1",
                    "customFields": {self.key: "gold"},
                },
                {"domain": "globex.com", "name": "Globex of A"},
            ],
            segmentId=self.seg,
        )
        self.aid = results[0]["rtp_aid"]
        self.aid2 = results[1]["rtp_aid"]
        self.snapshot = self.state()

    def state(self) -> Any:
        seg = self.a.api.get(f"/segments/{self.seg}").json()["data"]
        return listed(self.a.api), seg, self.a.api.get("/accounts/custom-fields").json()["data"]


@pytest.fixture
def world(workspace: Workspace, other: Workspace) -> World:
    return World(workspace, other)


# ---- reading ---------------------------------------------------------------------------


def test_list_shows_nothing_of_another_workspace(world: World) -> None:
    b = world.b.api
    assert listed(b) == []
    assert listed(b, domains='["acme.com","globex.com"]') == []
    assert listed(b, lastSync="2000-01-01T00:00:00Z") == []
    assert b.get("/accounts/missing-external-ids").json()["data"] == []
    assert b.get("/segments").json()["data"]["data"] == []
    assert (
        b.get("/segments", params={"type": "all", "status": "active,draft,archived"}).json()[
            "data"
        ]["data"]
        == []
    )
    assert b.get("/accounts/custom-fields").json()["data"] == []
    for api in (world.b.crm,):
        assert listed(api) == []


@pytest.mark.parametrize("suffix", ["", "/deals", "/activities"])
def test_get_by_id_of_another_workspace_is_unknown(world: World, suffix: str) -> None:
    b = world.b.api
    theirs = b.get(f"/accounts/{world.aid}{suffix}")
    unknown = b.get(f"/accounts/{UNKNOWN_ID}{suffix}")
    assert theirs.status_code == 404
    assert theirs.json()["customMessage"] == f"Account '{world.aid}' not found"
    same_answer(theirs, unknown, world.aid, UNKNOWN_ID)
    assert world.b.crm.get(f"/accounts/{world.aid}").status_code == 404


def test_segment_of_another_workspace_is_unknown(world: World) -> None:
    b = world.b.api
    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"name": "hijacked", "status": "archived"}),
        ("GET", "/accounts", None),
        ("POST", "/accounts", {"domains": ["acme.com"]}),
        ("DELETE", "/accounts", {"rtp_aids": [world.aid]}),
    ]:
        kw: dict[str, Any] = {"json": body} if body is not None else {}
        theirs = b.request(method, f"/segments/{world.seg}{suffix}", **kw)
        unknown = b.request(method, f"/segments/{UNKNOWN_SEGMENT}{suffix}", **kw)
        assert theirs.status_code == 404, (method, suffix, theirs.text)
        same_answer(theirs, unknown, world.seg, UNKNOWN_SEGMENT)
    assert world.state() == world.snapshot


def test_push_with_segment_of_another_workspace(world: World) -> None:
    b = world.b.api
    theirs = b.post(
        "/accounts", json={"accounts": [{"domain": "b.com", "name": "B"}], "segmentId": world.seg}
    )
    unknown = b.post(
        "/accounts",
        json={"accounts": [{"domain": "b.com", "name": "B"}], "segmentId": UNKNOWN_SEGMENT},
    )
    assert theirs.status_code == 400
    assert theirs.json()["customMessage"] == f"Segment '{world.seg}' not found"
    same_answer(theirs, unknown, world.seg, UNKNOWN_SEGMENT)
    assert listed(b) == []
    assert world.state() == world.snapshot


# ---- changing --------------------------------------------------------------------------


def test_put_by_rtp_aid_of_another_workspace(world: World) -> None:
    key_b = custom_field(world.b.api, "Tier")
    assert key_b == world.key
    theirs = world.b.api.put(f"/accounts/{world.aid}", json={"customFields": {key_b: "stolen"}})
    unknown = world.b.api.put(f"/accounts/{UNKNOWN_ID}", json={"customFields": {key_b: "x"}})
    assert theirs.status_code == 404
    same_answer(theirs, unknown, world.aid, UNKNOWN_ID)
    assert world.state()[0] == world.snapshot[0]


def test_crm_put_by_external_id_of_another_workspace(world: World) -> None:
    key_b = custom_field(world.b.api, "Tier")
    crm = world.b.crm
    theirs = crm.put("/accounts/EXT-1", json={"customFields": {key_b: "stolen"}})
    unknown = crm.put("/accounts/EXT-404", json={"customFields": {key_b: "x"}})
    assert theirs.status_code == 404
    same_answer(theirs, unknown, "EXT-1", "EXT-404")
    assert world.state()[0] == world.snapshot[0]


def test_crm_put_with_shared_external_id_changes_only_own(world: World) -> None:
    b = world.b
    key_b = custom_field(b.api, "Tier")
    [mine] = push(b.api, [{"domain": "acme.com", "name": "Acme of B", "externalId": "EXT-1"}])
    assert mine["status"] == "created"
    r = b.crm.put("/accounts/EXT-1", json={"customFields": {key_b: "B's value"}})
    assert r.status_code == 200, r.text
    assert listed(b.api)[0]["customFields"] == {key_b: "B's value"}
    assert world.state()[0] == world.snapshot[0]
    r = world.a.crm.put("/accounts/EXT-1", json={"customFields": {world.key: "A's value"}})
    assert r.status_code == 200
    assert listed(b.api)[0]["customFields"] == {key_b: "B's value"}
    assert listed(world.a.api)[0]["customFields"] == {world.key: "A's value"}


def test_mappings_do_not_reach_another_workspace(world: World) -> None:
    r = world.b.api.patch(
        "/accounts/external-ids",
        json={
            "mappings": [
                {"domain": "acme.com", "externalId": "B-1"},
                {"domain": "globex.com", "externalId": "EXT-1"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {
        "matched": 0,
        "updated": 0,
        "notFound": ["acme.com", "globex.com"],
    }
    assert world.state() == world.snapshot


def test_mapping_does_not_steal_external_id_across_workspaces(world: World) -> None:
    b = world.b.api
    push(b, [{"domain": "initech.com", "name": "Initech"}])
    r = b.patch(
        "/accounts/external-ids",
        json={"mappings": [{"domain": "initech.com", "externalId": "EXT-1"}]},
    )
    assert r.json()["data"] == {"matched": 1, "updated": 1, "notFound": []}
    assert listed(b)[0]["externalId"] == "EXT-1"
    # A still holds EXT-1.
    assert world.state() == world.snapshot


def test_same_domain_and_external_id_allowed_in_both(world: World) -> None:
    b = world.b.api
    results = push(
        b, [{"domain": "https://www.acme.com", "name": "Acme of B", "externalId": "EXT-1"}]
    )
    assert results[0]["status"] == "created", results
    assert "reason" not in results[0]
    assert results[0]["rtp_aid"] != world.aid
    # B's upsert matches only B's account.
    again = push(b, [{"domain": "acme.com", "name": "Acme of B 2"}], upsert=True)
    assert again[0]["status"] == "updated"
    assert again[0]["rtp_aid"] == results[0]["rtp_aid"]
    assert [(x["domain"], x["name"]) for x in listed(b)] == [("acme.com", "Acme of B 2")]
    assert world.state() == world.snapshot


def test_external_id_conflict_does_not_name_another_workspaces_domain(world: World) -> None:
    results = push(world.b.api, [{"domain": "other.com", "name": "O", "externalId": "EXT-1"}])
    assert results[0]["status"] == "created"
    assert "acme.com" not in str(results)


def test_segment_members_of_another_workspace(world: World) -> None:
    b = world.b.api
    sid_b = segment(b, name="B's list")
    r = b.post(
        f"/segments/{sid_b}/accounts", json={"rtp_aids": [world.aid], "domains": ["globex.com"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["added"] == 0
    assert sorted(r.json()["data"]["notFound"]) == sorted([world.aid, "globex.com"])
    r = b.request("DELETE", f"/segments/{sid_b}/accounts", json={"rtp_aids": [world.aid]})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["removed"] == 0
    assert r.json()["data"]["notFound"] == [world.aid]
    assert b.get(f"/segments/{sid_b}/accounts").json()["data"]["data"] == []
    assert world.state() == world.snapshot


def test_custom_fields_are_per_workspace(world: World) -> None:
    b = world.b.api
    # A's key is unknown in B.
    results = push(b, [{"domain": "b.com", "name": "B", "customFields": {world.key: "x"}}])
    assert results[0]["status"] == "failed"
    assert world.key in results[0]["reason"]
    # B may create the same label without a conflict, and deleting it leaves A's alone.
    assert custom_field(b, "Tier") == world.key
    assert b.delete(f"/accounts/custom-fields/{world.key}").status_code == 200
    assert world.state() == world.snapshot
    # A deleting its field does not touch B's re-created one.
    custom_field(b, "Tier")
    assert world.a.api.delete(f"/accounts/custom-fields/{world.key}").status_code == 200
    assert [f["key"] for f in b.get("/accounts/custom-fields").json()["data"]] == [world.key]


def test_deleting_another_workspaces_custom_field_is_unknown(world: World) -> None:
    r = world.b.api.delete(f"/accounts/custom-fields/{world.key}")
    assert r.status_code == 404
    assert world.state() == world.snapshot


# ---- cursors ---------------------------------------------------------------------------


def test_account_cursor_of_another_workspace(world: World) -> None:
    push(world.b.api, [{"domain": "x.com", "name": "X"}, {"domain": "y.com", "name": "Y"}])
    cursor = world.a.api.get("/accounts", params={"limit": 1}).json()["data"]["nextCursor"]
    assert cursor
    for api in (world.b.api, world.b.crm):
        r = api.get("/accounts", params={"cursor": cursor})
        assert r.status_code == 400
        assert r.json()["customMessage"] == "Invalid cursor"
        assert r.json()["data"] is None
    # And B's cursor is no good in A.
    cursor_b = world.b.api.get("/accounts", params={"limit": 1}).json()["data"]["nextCursor"]
    r = world.a.api.get("/accounts", params={"cursor": cursor_b})
    assert r.json()["customMessage"] == "Invalid cursor"


def test_segment_list_cursor_of_another_workspace(world: World) -> None:
    segment(world.a.api, name="second")
    segment(world.b.api, name="b1")
    segment(world.b.api, name="b2")
    cursor = world.a.api.get("/segments", params={"limit": 1}).json()["data"]["nextCursor"]
    assert cursor
    r = world.b.api.get("/segments", params={"cursor": cursor})
    assert r.status_code == 400
    assert r.json()["customMessage"] == "Invalid cursor"


def test_segment_members_cursor_of_another_workspace(world: World) -> None:
    cursor = world.a.api.get(f"/segments/{world.seg}/accounts", params={"limit": 1}).json()["data"][
        "nextCursor"
    ]
    assert cursor
    sid_b = segment(world.b.api, name="B")
    push(
        world.b.api,
        [{"domain": "x.com", "name": "X"}, {"domain": "y.com", "name": "Y"}],
        segmentId=sid_b,
    )
    r = world.b.api.get(f"/segments/{sid_b}/accounts", params={"cursor": cursor})
    assert r.status_code == 400
    assert r.json()["customMessage"] == "Invalid cursor"


# ---- deals and activities --------------------------------------------------------------


def _deal(name: str) -> dict[str, Any]:
    return {
        "deals": [
            {
                "externalDealId": "DEAL-1",
                "name": name,
                "amount": 100,
                "associatedAccounts": [{"domain": "acme.com", "externalId": "EXT-1"}],
            }
        ]
    }


def _activity(subject: str) -> dict[str, Any]:
    return {
        "activities": [
            {
                "externalActivityId": "ACT-1",
                "activityType": "call",
                "occurredAt": "2024-05-01T10:00:00Z",
                "domain": "acme.com",
                "ownerEmail": "rep@example.com",
                "subject": subject,
                "contacts": [{"email": "buyer@acme.com", "name": subject}],
            }
        ]
    }


def test_deals_with_same_external_ids_are_independent(world: World) -> None:
    a, b = world.a.api, world.b.api
    [b_acc] = push(b, [{"domain": "acme.com", "name": "Acme of B", "externalId": "EXT-1"}])
    r = a.post("/deals", json=_deal("A's deal"))
    assert r.json()["data"]["results"][0]["status"] == "created", r.text
    r = b.post("/deals", json=_deal("B's deal"))
    assert r.json()["data"]["results"][0]["status"] == "created", r.text
    r = b.post("/deals", json=_deal("B's deal v2"))
    assert r.json()["data"]["results"][0]["status"] == "updated", r.text
    a_deals = a.get(f"/accounts/{world.aid}/deals").json()["data"]
    b_deals = b.get(f"/accounts/{b_acc['rtp_aid']}/deals").json()["data"]
    assert [d["name"] for d in a_deals] == ["A's deal"]
    assert [d["name"] for d in b_deals] == ["B's deal v2"]
    assert b.get(f"/accounts/{world.aid}/deals").status_code == 404


def test_activities_with_same_external_ids_are_independent(world: World) -> None:
    a, b = world.a.api, world.b.api
    [b_acc] = push(b, [{"domain": "acme.com", "name": "Acme of B"}])
    r = a.post("/sales-activities", json=_activity("A's call"))
    assert r.json()["data"]["results"][0]["status"] == "created", r.text
    r = b.post("/sales-activities", json=_activity("B's call"))
    assert r.json()["data"]["results"][0]["status"] == "created", r.text
    r = b.post("/sales-activities", json=_activity("B's call again"))
    result = r.json()["data"]["results"][0]
    assert result["status"] == "failed"
    assert result["reason"] == "Activity 'ACT-1' already exists"
    a_acts = a.get(f"/accounts/{world.aid}/activities").json()["data"]
    b_acts = b.get(f"/accounts/{b_acc['rtp_aid']}/activities").json()["data"]
    assert [x["subject"] for x in a_acts] == ["A's call"]
    assert [x["subject"] for x in b_acts] == ["B's call"]
    assert [c["name"] for c in a_acts[0]["contacts"]] == ["A's call"]
    assert [c["name"] for c in b_acts[0]["contacts"]] == ["B's call"]
    assert b.get(f"/accounts/{world.aid}/activities").status_code == 404


def test_deal_pushed_in_b_does_not_link_to_a(world: World) -> None:
    r = world.b.api.post("/deals", json=_deal("B's deal"))
    assert r.status_code == 200, r.text
    assert world.a.api.get(f"/accounts/{world.aid}/deals").json()["data"] == []
