"""E6: POST /deals, and the extension GET /accounts/{rtp_aid}/deals that shows which deals
an account is linked to (spec sections 4, 6, 7 and 9)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import Api, Workspace
from tests.support.data import create_account
from tests.support.envelope import one_error, validation_data

# ---- helpers ----------------------------------------------------------------------------


def deal(ext: str, **fields: Any) -> dict[str, Any]:
    return {"externalDealId": ext, "name": f"Deal {ext}", **fields}


def push(api: Api, *deals: dict[str, Any]) -> list[dict[str, Any]]:
    r = api.post("/deals", json={"deals": list(deals)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["statusCode"] == 200 and body["path"] == "/api/v1/deals"
    return list(body["data"]["results"])


def deals_of(api: Api, aid: str) -> list[dict[str, Any]]:
    r = api.get(f"/accounts/{aid}/deals")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert isinstance(data, list)
    return list(data)


def linked(api: Api, aid: str) -> list[str]:
    return sorted(d["externalDealId"] for d in deals_of(api, aid))


def created(index: int, ext: str) -> dict[str, Any]:
    return {"index": index, "externalDealId": ext, "status": "created"}


def updated(index: int, ext: str) -> dict[str, Any]:
    return {"index": index, "externalDealId": ext, "status": "updated"}


FULL_DEAL = {
    "externalDealId": "D-1",
    "name": "Acme renewal",
    "amount": 12500.5,
    "stageId": "s1",
    "stageLabel": "Negotiation",
    "pipelineId": "p1",
    "pipelineLabel": "Sales",
    "startDate": "2026-01-15",
    "closedDate": "2026-03-01T12:30:00+02:00",
    "ownerName": "Olivia Owner",
    "ownerEmail": "olivia@example.com",
    "ownerId": "u-9",
    "dealCurrencyCode": "EUR",
    "associatedAccounts": [{"domain": "acme.com", "name": "Acme"}],
}


# ---- upsert -----------------------------------------------------------------------------


def test_push_creates_and_stores_every_field(api: Api) -> None:
    aid = create_account(api, "acme.com")
    assert push(api, FULL_DEAL) == [created(0, "D-1")]
    assert deals_of(api, aid) == [
        {
            "externalDealId": "D-1",
            "name": "Acme renewal",
            "amount": 12500.5,
            "stageId": "s1",
            "stageLabel": "Negotiation",
            "pipelineId": "p1",
            "pipelineLabel": "Sales",
            "startDate": "2026-01-15T00:00:00.000Z",
            "closedDate": "2026-03-01T10:30:00.000Z",
            "ownerName": "Olivia Owner",
            "ownerEmail": "olivia@example.com",
            "ownerId": "u-9",
            "dealCurrencyCode": "EUR",
        }
    ]


def test_second_push_of_same_id_updates(api: Api) -> None:
    aid = create_account(api, "acme.com")
    assoc = {"associatedAccounts": [{"domain": "acme.com"}]}
    assert push(api, deal("D-1", amount=100, stageLabel="Open", **assoc)) == [created(0, "D-1")]
    assert push(api, deal("D-1", amount=250, stageLabel="Won", **assoc), deal("D-2", **assoc)) == [
        updated(0, "D-1"),
        created(1, "D-2"),
    ]
    got = {d["externalDealId"]: d for d in deals_of(api, aid)}
    assert sorted(got) == ["D-1", "D-2"]
    assert (got["D-1"]["amount"], got["D-1"]["stageLabel"]) == (250, "Won")


def test_same_id_twice_in_one_request(api: Api) -> None:
    aid = create_account(api, "acme.com")
    assoc = {"associatedAccounts": [{"domain": "acme.com"}]}
    results = push(api, deal("D-1", amount=1, **assoc), deal("D-1", amount=2, **assoc))
    assert results == [created(0, "D-1"), updated(1, "D-1")]
    got = deals_of(api, aid)
    assert [(d["externalDealId"], d["amount"]) for d in got] == [("D-1", 2)]


def test_integer_amount_and_currency_code(api: Api) -> None:
    aid = create_account(api, "acme.com")
    push(
        api,
        deal("D-1", amount=7, dealCurrencyCode="usd", associatedAccounts=[{"domain": "acme.com"}]),
    )
    (got,) = deals_of(api, aid)
    assert got["amount"] == 7
    # Implementation's choice: the currency code is stored upper-cased.
    assert got["dealCurrencyCode"] == "USD"


def test_unknown_properties_are_ignored(api: Api) -> None:
    assert push(api, deal("D-1", probability=0.4, extra={"x": 1})) == [created(0, "D-1")]


def test_deals_are_per_workspace(workspace: Workspace, other: Workspace) -> None:
    assoc = [{"domain": "acme.com"}]
    mine = create_account(workspace.api, "acme.com")
    theirs = create_account(other.api, "acme.com")
    assert push(workspace.api, deal("D-1", associatedAccounts=assoc)) == [created(0, "D-1")]
    # The same externalDealId in another workspace is a different deal.
    assert push(other.api, deal("D-1", associatedAccounts=assoc)) == [created(0, "D-1")]
    assert push(other.api, deal("D-2", associatedAccounts=assoc)) == [created(0, "D-2")]
    assert linked(workspace.api, mine) == ["D-1"]
    assert linked(other.api, theirs) == ["D-1", "D-2"]
    r = other.api.get(f"/accounts/{mine}/deals")
    assert r.status_code == 404, r.text
    assert r.json()["customMessage"] == f"Account '{mine}' not found"


def test_crm_mount_serves_deals(workspace: Workspace) -> None:
    aid = create_account(workspace.api, "acme.com")
    r = workspace.crm.post(
        "/deals", json={"deals": [deal("D-1", associatedAccounts=[{"domain": "acme.com"}])]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"results": [created(0, "D-1")]}
    assert linked(workspace.crm, aid) == ["D-1"]


# ---- batch shape ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "rule", "text"),
    [
        ({}, "isArray", "deals must be an array"),
        ({"deals": None}, "isArray", "deals must be an array"),
        ({"deals": {"externalDealId": "x"}}, "isArray", "deals must be an array"),
        ({"deals": "x"}, "isArray", "deals must be an array"),
        ({"deals": []}, "arrayMinSize", "deals must contain at least 1 elements"),
        (
            {"deals": [deal(f"D-{i}") for i in range(101)]},
            "arrayMaxSize",
            "deals must contain no more than 100 elements",
        ),
    ],
    ids=["absent", "null", "object", "string", "empty", "101"],
)
def test_deals_array_size_and_type(api: Api, body: dict[str, Any], rule: str, text: str) -> None:
    err = one_error(api.post("/deals", json=body))
    assert err == {"property": "deals", "path": "deals", "constraints": {rule: text}}


def test_one_hundred_deals_are_accepted(api: Api) -> None:
    results = push(api, *(deal(f"D-{i}") for i in range(100)))
    assert results == [created(i, f"D-{i}") for i in range(100)]


@pytest.mark.parametrize("prop", ["externalDealId", "name"])
@pytest.mark.parametrize("value", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_required_strings(api: Api, prop: str, value: str | None) -> None:
    item = deal("D-1")
    if value is None:
        del item[prop]
    else:
        item[prop] = value
    err = one_error(api.post("/deals", json={"deals": [deal("D-0"), item]}))
    assert err == {
        "property": prop,
        "path": f"deals.1.{prop}",
        "constraints": {"isNotEmpty": f"{prop} should not be empty"},
    }


@pytest.mark.parametrize("prop", ["startDate", "closedDate"])
@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "01/02/2026", ""])
def test_dates_must_be_iso8601(api: Api, prop: str, value: str) -> None:
    err = one_error(api.post("/deals", json={"deals": [deal("D-1", **{prop: value})]}))
    assert err == {
        "property": prop,
        "path": f"deals.0.{prop}",
        "constraints": {"isISO8601": f"{prop} must be a valid ISO 8601 date string"},
    }


def test_dates_without_offset_are_utc(api: Api) -> None:
    aid = create_account(api, "acme.com")
    push(
        api,
        deal(
            "D-1",
            startDate="2026-02-03T04:05:06",
            closedDate="2026-02-04T00:00:00Z",
            associatedAccounts=[{"domain": "acme.com"}],
        ),
    )
    (got,) = deals_of(api, aid)
    assert got["startDate"] == "2026-02-03T04:05:06.000Z"
    assert got["closedDate"] == "2026-02-04T00:00:00.000Z"


@pytest.mark.parametrize("value", ["olivia", "olivia@", "@example.com", "a b@example.com"])
def test_owner_email_must_be_an_email(api: Api, value: str) -> None:
    err = one_error(api.post("/deals", json={"deals": [deal("D-1", ownerEmail=value)]}))
    assert err == {
        "property": "ownerEmail",
        "path": "deals.0.ownerEmail",
        "constraints": {"isEmail": "ownerEmail must be an email"},
    }


@pytest.mark.parametrize("value", ["100", True, [1], {"v": 1}])
def test_amount_must_be_a_number(api: Api, value: Any) -> None:
    err = one_error(api.post("/deals", json={"deals": [deal("D-1", amount=value)]}))
    assert err == {
        "property": "amount",
        "path": "deals.0.amount",
        "constraints": {
            "isNumber": "amount must be a number conforming to the specified constraints"
        },
    }


@pytest.mark.parametrize("prop", ["externalDealId", "name", "stageLabel", "ownerName"])
def test_string_properties_reject_other_types(api: Api, prop: str) -> None:
    err = one_error(api.post("/deals", json={"deals": [deal("D-1", **{prop: 5})]}))
    assert err == {
        "property": prop,
        "path": f"deals.0.{prop}",
        "constraints": {"isString": f"{prop} must be a string"},
    }


def test_invalid_currency_code_is_a_validation_error(api: Api) -> None:
    err = one_error(api.post("/deals", json={"deals": [deal("D-1", dealCurrencyCode="US")]}))
    assert (err["property"], err["path"]) == ("dealCurrencyCode", "deals.0.dealCurrencyCode")


def test_associated_accounts_shape(api: Api) -> None:
    err = one_error(
        api.post(
            "/deals", json={"deals": [deal("D-1", associatedAccounts=[{"domain": "not a domain"}])]}
        )
    )
    assert err == {
        "property": "domain",
        "path": "deals.0.associatedAccounts.0.domain",
        "constraints": {"isDomain": "domain must be a valid domain name"},
    }
    err = one_error(api.post("/deals", json={"deals": [deal("D-1", associatedAccounts="x")]}))
    assert err == {
        "property": "associatedAccounts",
        "path": "deals.0.associatedAccounts",
        "constraints": {"isArray": "associatedAccounts must be an array"},
    }


def test_errors_in_several_items_are_all_reported(api: Api) -> None:
    r = api.post(
        "/deals",
        json={
            "deals": [
                deal("D-0", ownerEmail="nope"),
                deal("D-1"),
                {"name": "x", "startDate": "never"},
            ]
        },
    )
    data = validation_data(r)
    assert sorted((d["path"], next(iter(d["constraints"].values()))) for d in data) == [
        ("deals.0.ownerEmail", "ownerEmail must be an email"),
        ("deals.2.externalDealId", "externalDealId should not be empty"),
        ("deals.2.startDate", "startDate must be a valid ISO 8601 date string"),
    ]


def test_shape_error_rejects_whole_batch_and_writes_nothing(api: Api) -> None:
    aid = create_account(api, "acme.com")
    assoc = [{"domain": "acme.com"}]
    assert push(api, deal("D-0", amount=1, associatedAccounts=assoc)) == [created(0, "D-0")]
    r = api.post(
        "/deals",
        json={
            "deals": [
                deal("D-0", amount=2, associatedAccounts=assoc),
                deal("D-1", associatedAccounts=assoc),
                deal("D-2", closedDate="tomorrow"),
            ]
        },
    )
    assert r.status_code == 400, r.text
    got = deals_of(api, aid)
    assert [(d["externalDealId"], d["amount"]) for d in got] == [("D-0", 1)]
    assert push(api, deal("D-1")) == [created(0, "D-1")]


# ---- associations -----------------------------------------------------------------------


def test_association_links_by_normalised_domain(api: Api) -> None:
    acme = create_account(api, "acme.com")
    eu = create_account(api, "eu.acme.com")
    push(
        api,
        deal("D-1", associatedAccounts=[{"domain": "https://WWW.Acme.com:443/pricing?x=1"}]),
        deal("D-2", associatedAccounts=[{"domain": "EU.acme.com."}]),
    )
    assert linked(api, acme) == ["D-1"]
    assert linked(api, eu) == ["D-2"]


def test_association_links_by_external_id(api: Api) -> None:
    acme = create_account(api, "acme.com", externalId="CRM-1")
    push(api, deal("D-1", associatedAccounts=[{"externalId": "CRM-1", "name": "Acme"}]))
    assert linked(api, acme) == ["D-1"]


def test_external_id_takes_precedence_over_domain(api: Api) -> None:
    by_ext = create_account(api, "acme.com", externalId="CRM-1")
    by_domain = create_account(api, "globex.com")
    push(api, deal("D-1", associatedAccounts=[{"externalId": "CRM-1", "domain": "globex.com"}]))
    assert linked(api, by_ext) == ["D-1"]
    assert linked(api, by_domain) == []


def test_domain_is_the_fallback_when_external_id_matches_nothing(api: Api) -> None:
    acme = create_account(api, "acme.com")
    push(api, deal("D-1", associatedAccounts=[{"externalId": "CRM-404", "domain": "acme.com"}]))
    assert linked(api, acme) == ["D-1"]


def test_one_deal_may_link_several_accounts(api: Api) -> None:
    a = create_account(api, "acme.com")
    b = create_account(api, "globex.com", externalId="G-1")
    c = create_account(api, "initech.com")
    push(
        api,
        deal(
            "D-1",
            associatedAccounts=[{"domain": "acme.com"}, {"externalId": "G-1"}, {"name": "solo"}],
        ),
    )
    assert linked(api, a) == ["D-1"]
    assert linked(api, b) == ["D-1"]
    assert linked(api, c) == []


def test_unmatched_domain_association_links_when_the_account_appears(api: Api) -> None:
    push(api, deal("D-1", associatedAccounts=[{"domain": "https://www.later.com/x"}]))
    push(api, deal("D-2", associatedAccounts=[{"domain": "never.com"}]))
    later = create_account(api, "later.com")
    assert linked(api, later) == ["D-1"]


def test_unmatched_external_id_association_links_when_the_account_appears(api: Api) -> None:
    push(api, deal("D-1", associatedAccounts=[{"externalId": "CRM-7"}]))
    fresh = create_account(api, "fresh.com", externalId="CRM-7")
    assert linked(api, fresh) == ["D-1"]
    # An account that gets the externalId later by mapping (E5) is linked too.
    push(api, deal("D-2", associatedAccounts=[{"externalId": "CRM-8"}]))
    mapped = create_account(api, "mapped.com")
    assert linked(api, mapped) == []
    r = api.patch(
        "/accounts/external-ids",
        json={"mappings": [{"domain": "mapped.com", "externalId": "CRM-8"}]},
    )
    assert r.status_code == 200, r.text
    assert linked(api, mapped) == ["D-2"]


def test_link_follows_an_external_id_that_moves(api: Api) -> None:
    first = create_account(api, "acme.com", externalId="CRM-1")
    second = create_account(api, "globex.com")
    push(api, deal("D-1", associatedAccounts=[{"externalId": "CRM-1"}]))
    assert linked(api, first) == ["D-1"]
    r = api.patch(
        "/accounts/external-ids",
        json={"mappings": [{"domain": "globex.com", "externalId": "CRM-1"}]},
    )
    assert r.status_code == 200, r.text
    assert linked(api, second) == ["D-1"]
    assert linked(api, first) == []


def test_updating_a_deal_replaces_its_associations(api: Api) -> None:
    # Implementation's choice: associatedAccounts sent on an update replace the old ones.
    a = create_account(api, "acme.com")
    b = create_account(api, "globex.com")
    push(api, deal("D-1", associatedAccounts=[{"domain": "acme.com"}]))
    assert push(api, deal("D-1", associatedAccounts=[{"domain": "globex.com"}])) == [
        updated(0, "D-1")
    ]
    assert linked(api, a) == []
    assert linked(api, b) == ["D-1"]


def test_deals_of_account_errors(api: Api) -> None:
    r = api.get("/accounts/not-an-id/deals")
    assert r.status_code == 400, r.text
    assert r.json()["customMessage"] == "Invalid rtp_aid format"
    assert r.json()["data"] is None
    missing = "0" * 24
    r = api.get(f"/accounts/{missing}/deals")
    assert r.status_code == 404, r.text
    assert r.json()["customMessage"] == f"Account '{missing}' not found"
    assert r.json()["message"] == "Not Found"
