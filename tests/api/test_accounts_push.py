"""E2: POST /accounts, every rule of the spec."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.api import Api, Workspace
from tests.support.data import SCORE_COLUMNS, acc, custom_field, segment
from tests.support.envelope import business

# ---- helpers ---------------------------------------------------------------------------


def push_raw(api: Api, accounts: list[dict[str, Any]], **body: Any) -> httpx.Response:
    return api.post("/accounts", json={"accounts": accounts, **body})


def push(api: Api, accounts: list[dict[str, Any]], **body: Any) -> list[dict[str, Any]]:
    r = push_raw(api, accounts, **body)
    assert r.status_code == 200, r.text
    results = r.json()["data"]["results"]
    assert len(results) == len(accounts)
    return list(results)


def all_accounts(api: Api) -> list[dict[str, Any]]:
    r = api.get("/accounts", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["data"])


def by_domain(api: Api) -> dict[str, dict[str, Any]]:
    return {a["domain"]: a for a in all_accounts(api)}


def members(api: Api, sid: str) -> list[str]:
    r = api.get(f"/segments/{sid}/accounts", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [a["domain"] for a in r.json()["data"]["data"]]


def validation(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["statusCode"] == 400
    assert body["message"] == "Bad Request"
    assert "customMessage" not in body
    assert isinstance(body["data"], list) and body["data"]
    for e in body["data"]:
        assert set(e) == {"property", "path", "constraints"}
        assert isinstance(e["constraints"], dict) and e["constraints"]
    return list(body["data"])


def assert_violation(r: httpx.Response, path: str, prop: str, text: str) -> None:
    errors = validation(r)
    hits = [e for e in errors if e["path"] == path]
    assert hits, f"no error at {path}: {errors}"
    assert hits[0]["property"] == prop
    assert text in hits[0]["constraints"].values(), hits[0]


# ---- validation texts ------------------------------------------------------------------

OK = acc("ok.com")


@pytest.mark.parametrize(
    "body,path,prop,text",
    [
        ({}, "accounts", "accounts", "accounts must be an array"),
        ({"accounts": None}, "accounts", "accounts", "accounts must be an array"),
        ({"accounts": "acme.com"}, "accounts", "accounts", "accounts must be an array"),
        ({"accounts": {"domain": "a.com"}}, "accounts", "accounts", "accounts must be an array"),
        ({"accounts": 3}, "accounts", "accounts", "accounts must be an array"),
        ({"accounts": []}, "accounts", "accounts", "accounts must contain at least 1 elements"),
        (
            {"accounts": [acc(f"d{i}.com") for i in range(101)]},
            "accounts",
            "accounts",
            "accounts must contain no more than 100 elements",
        ),
        (
            {"accounts": [{"name": "A"}]},
            "accounts.0.domain",
            "domain",
            "domain should not be empty",
        ),
        ({"accounts": [acc("")]}, "accounts.0.domain", "domain", "domain should not be empty"),
        ({"accounts": [acc(None)]}, "accounts.0.domain", "domain", "domain should not be empty"),  # type: ignore[arg-type]
        (
            {"accounts": [{"domain": "a.com"}]},
            "accounts.0.name",
            "name",
            "name should not be empty",
        ),
        ({"accounts": [acc("a.com", "")]}, "accounts.0.name", "name", "name should not be empty"),
        ({"accounts": [acc("a.com", None)]}, "accounts.0.name", "name", "name should not be empty"),  # type: ignore[arg-type]
        ({"accounts": [acc(5)]}, "accounts.0.domain", "domain", "domain must be a string"),  # type: ignore[arg-type]
        ({"accounts": [acc("a.com", 5)]}, "accounts.0.name", "name", "name must be a string"),  # type: ignore[arg-type]
        (
            {"accounts": [acc("a.com", externalId=5)]},
            "accounts.0.externalId",
            "externalId",
            "externalId must be a string",
        ),
        (
            {"accounts": [acc("a.com", shortName=True)]},
            "accounts.0.shortName",
            "shortName",
            "shortName must be a string",
        ),
        (
            {"accounts": [acc("a.com", linkedinUrl=["x"])]},
            "accounts.0.linkedinUrl",
            "linkedinUrl",
            "linkedinUrl must be a string",
        ),
        (
            {"accounts": [acc("a.com", tags="vip")]},
            "accounts.0.tags",
            "tags",
            "tags must be an array",
        ),
        (
            {"accounts": [acc("a.com", tags=["vip", 3])]},
            "accounts.0.tags",
            "tags",
            "each value in tags must be a string",
        ),
        ({"accounts": [OK], "upsert": "yes"}, "upsert", "upsert", "upsert must be a boolean value"),
        ({"accounts": [OK], "upsert": 1}, "upsert", "upsert", "upsert must be a boolean value"),
        (
            {"accounts": [OK], "segmentId": 5},
            "segmentId",
            "segmentId",
            "segmentId must be a string",
        ),
        (
            {"accounts": [acc("not a domain")]},
            "accounts.0.domain",
            "domain",
            "domain must be a valid domain name",
        ),
        (
            {"accounts": [acc("localhost")]},
            "accounts.0.domain",
            "domain",
            "domain must be a valid domain name",
        ),
        (
            {"accounts": [OK, OK, OK, acc("x")]},
            "accounts.3.domain",
            "domain",
            "domain must be a valid domain name",
        ),
    ],
)
def test_validation_texts(api: Api, body: dict[str, Any], path: str, prop: str, text: str) -> None:
    r = api.post("/accounts", json=body)
    assert_violation(r, path, prop, text)
    assert all_accounts(api) == []


def test_100_items_is_the_limit(api: Api) -> None:
    results = push(api, [acc(f"hundred{i}.com") for i in range(100)])
    assert [r["status"] for r in results] == ["created"] * 100
    assert len(all_accounts(api)) == 100


def test_custom_fields_must_be_an_object(api: Api) -> None:
    r = api.post("/accounts", json={"accounts": [acc("a.com", customFields=["x"])]})
    errors = validation(r)
    assert [e["path"] for e in errors] == ["accounts.0.customFields"]


def test_item_that_is_not_an_object_is_a_validation_error(api: Api) -> None:
    r = api.post("/accounts", json={"accounts": [OK, "acme.com"]})
    errors = validation(r)
    assert errors[0]["path"].startswith("accounts.1") or errors[0]["path"] == "accounts"
    assert all_accounts(api) == []


def test_every_error_is_reported(api: Api) -> None:
    r = api.post("/accounts", json={"accounts": [{"name": "A"}, OK, {"domain": "b.com"}]})
    errors = validation(r)
    assert {e["path"] for e in errors} == {"accounts.0.domain", "accounts.2.name"}


def test_shape_error_anywhere_rejects_whole_batch(api: Api) -> None:
    push(api, [acc("existing.com", "Old name")])
    r = api.post(
        "/accounts",
        json={
            "upsert": True,
            "accounts": [
                acc("existing.com", "New name"),
                acc("fresh1.com"),
                acc("fresh2.com", tags=[1]),
                acc("fresh3.com"),
            ],
        },
    )
    assert_violation(r, "accounts.2.tags", "tags", "each value in tags must be a string")
    accounts = by_domain(api)
    assert set(accounts) == {"existing.com"}
    assert accounts["existing.com"]["name"] == "Old name"


def test_shape_error_with_segment_writes_no_membership(api: Api) -> None:
    sid = segment(api)
    r = api.post("/accounts", json={"segmentId": sid, "accounts": [OK, acc("bad")]})
    validation(r)
    assert members(api, sid) == []
    assert all_accounts(api) == []


# ---- results ---------------------------------------------------------------------------


def test_results_in_request_order(api: Api) -> None:
    push(api, [acc("taken.com")])
    results = push(
        api,
        [
            acc("https://www.Zeta.com/path", "Zeta", externalId="Z-1"),
            acc("taken.com"),
            acc("alpha.com", "Alpha"),
        ],
    )
    assert [r["index"] for r in results] == [0, 1, 2]
    assert [r["domain"] for r in results] == ["zeta.com", "taken.com", "alpha.com"]
    assert [r["status"] for r in results] == ["created", "failed", "created"]
    assert [r["externalId"] for r in results] == ["Z-1", None, None]
    created = results[0]
    assert set(created) == {"index", "externalId", "domain", "rtp_aid", "status"}
    assert isinstance(created["rtp_aid"], str) and len(created["rtp_aid"]) == 24
    failed = results[1]
    assert set(failed) == {"index", "externalId", "domain", "rtp_aid", "status", "reason"}
    assert failed["rtp_aid"] is None
    listed = by_domain(api)
    assert listed["zeta.com"]["rtp_aid"] == created["rtp_aid"]
    assert listed["alpha.com"]["rtp_aid"] == results[2]["rtp_aid"]


def test_new_accounts_start_unscored(api: Api) -> None:
    key = custom_field(api, "Tier", "singleLineText")
    result = push(api, [acc("new.com", "New Co")])[0]
    item = api.get(f"/accounts/{result['rtp_aid']}").json()["data"]
    for score in SCORE_COLUMNS:
        assert item[score] == 0, score
    assert item["rtp_journey_stage"] is None
    assert item["rtp_last_account_date"] is None
    assert item["externalId"] is None
    assert item["name"] == "New Co"
    assert item["domain"] == "new.com"
    assert item["customFields"] == {key: None}
    assert item["segments"] == []


def test_all_fields_are_stored(api: Api) -> None:
    key = custom_field(api, "Region", "singleLineText")
    result = push(
        api,
        [
            acc(
                "full.com",
                "Full Co",
                externalId="CRM-1",
                shortName="Full",
                linkedinUrl="https://linkedin.com/company/full",
                tags=["a", "b"],
                customFields={key: "EMEA"},
            )
        ],
    )[0]
    assert result["status"] == "created"
    assert result["externalId"] == "CRM-1"
    item = by_domain(api)["full.com"]
    assert item["externalId"] == "CRM-1"
    assert item["name"] == "Full Co"
    assert item["customFields"] == {key: "EMEA"}
    # Not in the E1 table, but returned by this implementation.
    assert item["shortName"] == "Full"
    assert item["linkedinUrl"] == "https://linkedin.com/company/full"
    assert item["tags"] == ["a", "b"]


# ---- duplicates and upsert -------------------------------------------------------------


@pytest.mark.parametrize("upsert", [None, False])
def test_existing_domain_without_upsert_fails(api: Api, upsert: bool | None) -> None:
    first = push(api, [acc("acme.com", "Original")])[0]
    body: dict[str, Any] = {} if upsert is None else {"upsert": upsert}
    result = push(api, [acc("https://www.ACME.com/about", "Changed", externalId="E9")], **body)[0]
    assert result["status"] == "failed"
    assert result["reason"] == "Account with domain 'acme.com' already exists"
    assert result["rtp_aid"] is None
    assert result["domain"] == "acme.com"
    item = by_domain(api)["acme.com"]
    assert item["name"] == "Original"
    assert item["externalId"] is None
    assert item["rtp_aid"] == first["rtp_aid"]


def test_upsert_updates_given_fields_and_keeps_the_rest(api: Api) -> None:
    tier = custom_field(api, "Tier", "singleLineText")
    size = custom_field(api, "Size", "number")
    first = push(
        api,
        [
            acc(
                "acme.com",
                "Acme",
                externalId="E1",
                shortName="AC",
                tags=["x"],
                customFields={tier: "gold", size: 10},
            )
        ],
    )[0]
    result = push(
        api,
        [acc("https://www.Acme.com/x", "Acme Corp", customFields={size: 20})],
        upsert=True,
    )[0]
    assert result["status"] == "updated"
    assert result["rtp_aid"] == first["rtp_aid"]
    assert result["domain"] == "acme.com"
    assert "reason" not in result
    item = by_domain(api)["acme.com"]
    assert item["name"] == "Acme Corp"
    assert item["domain"] == "acme.com"
    assert item["externalId"] == "E1"
    assert item["customFields"] == {tier: "gold", size: 20}
    assert item["shortName"] == "AC"
    assert item["tags"] == ["x"]
    assert len(all_accounts(api)) == 1


def test_upsert_can_change_external_id(api: Api) -> None:
    push(api, [acc("acme.com", externalId="E1")])
    result = push(api, [acc("acme.com", externalId="E2")], upsert=True)[0]
    assert result["status"] == "updated"
    assert result["externalId"] == "E2"
    assert by_domain(api)["acme.com"]["externalId"] == "E2"
    # E1 is free again.
    assert push(api, [acc("other.com", externalId="E1")])[0]["status"] == "created"


def test_upsert_of_new_domain_creates(api: Api) -> None:
    result = push(api, [acc("brand-new.com")], upsert=True)[0]
    assert result["status"] == "created"
    assert "reason" not in result


def test_upsert_null_clears_a_custom_field(api: Api) -> None:
    tier = custom_field(api, "Tier", "singleLineText")
    size = custom_field(api, "Size", "number")
    push(api, [acc("acme.com", customFields={tier: "gold", size: 5})])
    result = push(api, [acc("acme.com", customFields={tier: None})], upsert=True)[0]
    assert result["status"] == "updated"
    assert by_domain(api)["acme.com"]["customFields"] == {tier: None, size: 5}


def test_identical_upsert_is_still_updated(api: Api) -> None:
    push(api, [acc("acme.com", "Acme", externalId="E1")])
    result = push(api, [acc("acme.com", "Acme", externalId="E1")], upsert=True)[0]
    assert result["status"] == "updated"
    assert result["externalId"] == "E1"


def test_same_domain_twice_without_upsert(api: Api) -> None:
    results = push(api, [acc("acme.com", "First"), acc("www.ACME.com", "Second")])
    assert [r["status"] for r in results] == ["created", "failed"]
    assert results[1]["reason"] == "Account with domain 'acme.com' already exists"
    assert results[1]["rtp_aid"] is None
    assert [(a["domain"], a["name"]) for a in all_accounts(api)] == [("acme.com", "First")]


def test_same_domain_twice_with_upsert(api: Api) -> None:
    tier = custom_field(api, "Tier", "singleLineText")
    size = custom_field(api, "Size", "number")
    results = push(
        api,
        [
            acc("acme.com", "First", customFields={tier: "gold"}),
            acc("https://acme.com/", "Second", customFields={size: 3}),
        ],
        upsert=True,
    )
    assert [r["status"] for r in results] == ["created", "updated"]
    assert results[0]["rtp_aid"] == results[1]["rtp_aid"]
    accounts = all_accounts(api)
    assert len(accounts) == 1
    assert accounts[0]["name"] == "Second"
    assert accounts[0]["customFields"] == {tier: "gold", size: 3}


def test_same_domain_twice_with_upsert_on_existing(api: Api) -> None:
    first = push(api, [acc("acme.com", "Zero")])[0]
    results = push(api, [acc("acme.com", "One"), acc("acme.com", "Two")], upsert=True)
    assert [r["status"] for r in results] == ["updated", "updated"]
    assert {r["rtp_aid"] for r in results} == {first["rtp_aid"]}
    assert by_domain(api)["acme.com"]["name"] == "Two"


# ---- externalId uniqueness -------------------------------------------------------------


def test_external_id_of_another_account_fails(api: Api) -> None:
    push(api, [acc("holder.com", externalId="CRM-7")])
    result = push(api, [acc("taker.com", externalId="CRM-7")])[0]
    assert result["status"] == "failed"
    assert result["rtp_aid"] is None
    assert "'holder.com'" in result["reason"]
    assert "CRM-7" in result["reason"]
    assert set(by_domain(api)) == {"holder.com"}


def test_external_id_of_another_account_fails_under_upsert(api: Api) -> None:
    push(api, [acc("holder.com", externalId="CRM-7"), acc("taker.com", "Taker")])
    result = push(api, [acc("taker.com", "Renamed", externalId="CRM-7")], upsert=True)[0]
    assert result["status"] == "failed"
    assert "'holder.com'" in result["reason"]
    accounts = by_domain(api)
    assert accounts["taker.com"]["externalId"] is None
    assert accounts["taker.com"]["name"] == "Taker"
    assert accounts["holder.com"]["externalId"] == "CRM-7"


def test_external_id_twice_in_one_request(api: Api) -> None:
    results = push(api, [acc("one.com", externalId="X"), acc("two.com", externalId="X")])
    assert [r["status"] for r in results] == ["created", "failed"]
    assert "'one.com'" in results[1]["reason"]
    assert set(by_domain(api)) == {"one.com"}


def test_external_id_freed_earlier_in_the_request_can_be_taken(api: Api) -> None:
    push(api, [acc("one.com", externalId="X")])
    results = push(
        api, [acc("one.com", externalId="Y"), acc("two.com", externalId="X")], upsert=True
    )
    assert [r["status"] for r in results] == ["updated", "created"]
    accounts = by_domain(api)
    assert accounts["one.com"]["externalId"] == "Y"
    assert accounts["two.com"]["externalId"] == "X"


def test_own_external_id_is_not_a_conflict(api: Api) -> None:
    push(api, [acc("one.com", externalId="X")])
    result = push(api, [acc("one.com", "New", externalId="X")], upsert=True)[0]
    assert result["status"] == "updated"


def test_business_failure_fails_only_its_item(api: Api) -> None:
    push(api, [acc("holder.com", externalId="X")])
    results = push(
        api, [acc("a.com"), acc("b.com", externalId="X"), acc("holder.com"), acc("c.com")]
    )
    assert [r["status"] for r in results] == ["created", "failed", "failed", "created"]
    assert set(by_domain(api)) == {"holder.com", "a.com", "c.com"}


# ---- customFields ----------------------------------------------------------------------

TYPES = {
    "T1": ("singleLineText", None),
    "T2": ("multiLineText", None),
    "SEL": ("singleSelection", ["Gold", "Silver"]),
    "MULTI": ("multiSelection", ["Red", "Green", "Blue"]),
    "NUM": ("number", None),
    "WHEN": ("date", None),
}


@pytest.fixture
def fields(api: Api) -> dict[str, str]:
    """Label -> key of one active custom field of each type."""
    return {label: custom_field(api, label, t, opts) for label, (t, opts) in TYPES.items()}


@pytest.mark.parametrize(
    "label,value",
    [
        ("T1", "hello"),
        ("T1", ""),
        ("T2", "line 1\nline 2"),
        ("SEL", "Gold"),
        ("MULTI", ["Red", "Blue"]),
        ("MULTI", []),
        ("NUM", 42),
        ("NUM", 3.25),
        ("NUM", -1),
        ("NUM", 0),
        ("WHEN", "2024-02-29"),
        ("WHEN", "2024-02-29T10:30:00Z"),
        ("WHEN", "2024-02-29T10:30:00.123+02:00"),
    ],
)
def test_custom_field_value_that_fits(
    api: Api, fields: dict[str, str], label: str, value: Any
) -> None:
    key = fields[label]
    result = push(api, [acc("fits.com", customFields={key: value})])[0]
    assert result["status"] == "created", result
    cf = by_domain(api)["fits.com"]["customFields"]
    assert cf[key] == value
    assert set(cf) == set(fields.values())
    assert all(v is None for k, v in cf.items() if k != key)


@pytest.mark.parametrize(
    "label,value",
    [
        ("T1", 5),
        ("T1", ["a"]),
        ("T1", True),
        ("T2", {"a": 1}),
        ("T2", 1.5),
        ("SEL", "Bronze"),
        ("SEL", "gold"),
        ("SEL", ["Gold"]),
        ("SEL", 1),
        ("MULTI", "Red"),
        ("MULTI", ["Red", "Purple"]),
        ("MULTI", [1]),
        ("NUM", "42"),
        ("NUM", True),
        ("NUM", [1]),
        ("WHEN", "not a date"),
        ("WHEN", "2024-13-45"),
        ("WHEN", 20240101),
        ("WHEN", ""),
    ],
)
def test_custom_field_value_that_does_not_fit(
    api: Api, fields: dict[str, str], label: str, value: Any
) -> None:
    key = fields[label]
    results = push(api, [acc("misfit.com", customFields={key: value}), acc("fine.com")])
    assert results[0]["status"] == "failed"
    assert results[0]["rtp_aid"] is None
    assert key in results[0]["reason"]
    assert results[1]["status"] == "created"
    assert set(by_domain(api)) == {"fine.com"}


def test_custom_field_misfit_under_upsert_writes_nothing(api: Api, fields: dict[str, str]) -> None:
    push(api, [acc("acme.com", "Acme", customFields={fields["T1"]: "keep"})])
    result = push(
        api,
        [acc("acme.com", "Renamed", customFields={fields["T1"]: "new", fields["NUM"]: "x"})],
        upsert=True,
    )[0]
    assert result["status"] == "failed"
    assert fields["NUM"] in result["reason"]
    item = by_domain(api)["acme.com"]
    assert item["name"] == "Acme"
    assert item["customFields"][fields["T1"]] == "keep"


def test_unknown_custom_field_key_fails(api: Api, fields: dict[str, str]) -> None:
    result = push(api, [acc("acme.com", customFields={"NOPE_C": "x"})])[0]
    assert result["status"] == "failed"
    assert "NOPE_C" in result["reason"]
    assert all_accounts(api) == []


def test_inactive_custom_field_key_fails(api: Api) -> None:
    key = custom_field(api, "Old Field", "singleLineText")
    assert key == "OLD_FIELD_C"
    r = api.delete(f"/accounts/custom-fields/{key}")
    assert r.status_code == 200, r.text
    result = push(api, [acc("acme.com", customFields={key: "x"})])[0]
    assert result["status"] == "failed"
    assert key in result["reason"]


@pytest.mark.parametrize("label", list(TYPES))
def test_null_is_accepted_for_every_type(api: Api, fields: dict[str, str], label: str) -> None:
    result = push(api, [acc("nulls.com", customFields={fields[label]: None})])[0]
    assert result["status"] == "created"
    assert by_domain(api)["nulls.com"]["customFields"][fields[label]] is None


def test_custom_fields_merge_per_key_across_upserts(api: Api, fields: dict[str, str]) -> None:
    push(api, [acc("acme.com", customFields={fields["T1"]: "a", fields["NUM"]: 1})])
    push(api, [acc("acme.com", customFields={fields["SEL"]: "Gold"})], upsert=True)
    push(api, [acc("acme.com", customFields={fields["NUM"]: None, fields["T1"]: "b"})], upsert=True)
    push(api, [acc("acme.com")], upsert=True)
    cf = by_domain(api)["acme.com"]["customFields"]
    assert cf == {
        fields["T1"]: "b",
        fields["T2"]: None,
        fields["SEL"]: "Gold",
        fields["MULTI"]: None,
        fields["NUM"]: None,
        fields["WHEN"]: None,
    }


# ---- segmentId -------------------------------------------------------------------------


def test_unknown_segment_is_400_and_writes_nothing(api: Api) -> None:
    sid = "0123456789abcdef01234567"
    r = push_raw(api, [acc("a.com"), acc("b.com")], segmentId=sid)
    business(r, 400, f"Segment '{sid}' not found")
    assert all_accounts(api) == []


def test_malformed_segment_id_is_not_found(api: Api) -> None:
    r = push_raw(api, [acc("a.com")], segmentId="nope")
    business(r, 400, "Segment 'nope' not found")
    assert all_accounts(api) == []


def test_archived_segment_is_400_and_writes_nothing(api: Api) -> None:
    push(api, [acc("existing.com", "Old")])
    sid = segment(api, "archived")
    r = push_raw(api, [acc("a.com"), acc("existing.com", "New")], segmentId=sid, upsert=True)
    business(r, 400, f"Segment '{sid}' is not active or draft and cannot accept new members")
    accounts = by_domain(api)
    assert set(accounts) == {"existing.com"}
    assert accounts["existing.com"]["name"] == "Old"


def test_segment_archived_later_refuses_members(api: Api) -> None:
    sid = segment(api, "active")
    r = api.patch(f"/segments/{sid}", json={"status": "archived"})
    assert r.status_code == 200, r.text
    r = push_raw(api, [acc("a.com")], segmentId=sid)
    business(r, 400, f"Segment '{sid}' is not active or draft and cannot accept new members")
    assert all_accounts(api) == []


def test_dynamic_segment_is_400_and_writes_nothing(workspace: Workspace, engine: Any) -> None:
    # Dynamic segments cannot be created through the API until the rule engine lands
    # (the API refuses them), so the row is written the way that feature will write it.
    from intently.auth.repository import workspace_id_by_name
    from intently.kit.db import write_tx
    from intently.kit.ids import new_id
    from intently.segments import repository as segments_repo

    api = workspace.api
    sid = new_id()
    with write_tx(engine) as conn:
        ws = workspace_id_by_name(conn, workspace.name)
        assert ws is not None
        segments_repo.insert(
            conn,
            {
                "workspace_id": ws,
                "id": sid,
                "name": "Hot accounts",
                "type": "dynamic",
                "status": "active",
                "rules": {"all": [{"field": "rtp_account_score", "op": "gte", "value": 60}]},
                "created_at": 0,
                "updated_at": 0,
            },
        )
    r = push_raw(api, [acc("a.com")], segmentId=sid)
    business(r, 400, f"Segment '{sid}' is not a static segment")
    assert all_accounts(api) == []


def test_segment_checked_before_items(api: Api) -> None:
    """Even a batch whose every item would fail gets the segment's 400."""
    push(api, [acc("a.com")])
    sid = "0123456789abcdef01234567"
    r = push_raw(api, [acc("a.com")], segmentId=sid)
    business(r, 400, f"Segment '{sid}' not found")


@pytest.mark.parametrize("status", ["active", "draft"])
def test_created_and_updated_accounts_join_the_segment(api: Api, status: str) -> None:
    push(api, [acc("existing.com"), acc("holder.com", externalId="X")])
    sid = segment(api, status)
    results = push(
        api,
        [acc("new.com"), acc("existing.com", "Renamed"), acc("loser.com", externalId="X")],
        segmentId=sid,
        upsert=True,
    )
    assert [r["status"] for r in results] == ["created", "updated", "failed"]
    assert sorted(members(api, sid)) == ["existing.com", "new.com"]
    r = api.get(f"/segments/{sid}")
    assert r.json()["data"]["memberCount"] == 2


def test_failed_items_do_not_join_the_segment(api: Api) -> None:
    push(api, [acc("existing.com")])
    sid = segment(api, "active")
    results = push(api, [acc("existing.com"), acc("fresh.com")], segmentId=sid)
    assert [r["status"] for r in results] == ["failed", "created"]
    assert members(api, sid) == ["fresh.com"]


def test_active_segment_shows_on_the_account(api: Api) -> None:
    sid = segment(api, "active", name="Target list")
    push(api, [acc("member.com"), acc("outsider.com")])
    push(api, [acc("member.com")], segmentId=sid, upsert=True)
    accounts = by_domain(api)
    assert accounts["member.com"]["segments"] == [{"segmentId": sid, "name": "Target list"}]
    assert accounts["outsider.com"]["segments"] == []


def test_draft_segment_does_not_show_on_the_account(api: Api) -> None:
    sid = segment(api, "draft")
    push(api, [acc("member.com")], segmentId=sid)
    assert by_domain(api)["member.com"]["segments"] == []
    assert members(api, sid) == ["member.com"]


def test_joining_twice_is_one_membership(api: Api) -> None:
    sid = segment(api, "active")
    push(api, [acc("a.com")], segmentId=sid)
    push(api, [acc("a.com"), acc("a.com")], segmentId=sid, upsert=True)
    assert members(api, sid) == ["a.com"]
    assert len(by_domain(api)["a.com"]["segments"]) == 1
