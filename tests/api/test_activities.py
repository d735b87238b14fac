"""E7: POST /sales-activities, observed through the extension
GET /accounts/{rtp_aid}/activities (spec sections 4, 6, 7 and 9)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import Api, Workspace
from tests.support.data import create_account
from tests.support.envelope import one_error, validation_data

# ---- helpers ----------------------------------------------------------------------------


def activity(ext: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "externalActivityId": ext,
        "activityType": "call",
        "occurredAt": "2026-04-01T10:00:00Z",
        "domain": "acme.com",
        "ownerEmail": "owner@example.com",
        "contacts": [{"email": "jane@acme.com"}],
    }
    return base | fields


def push(api: Api, *items: dict[str, Any]) -> list[dict[str, Any]]:
    r = api.post("/sales-activities", json={"activities": list(items)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["statusCode"] == 200 and body["path"] == "/api/v1/sales-activities"
    return list(body["data"]["results"])


def activities_of(api: Api, aid: str) -> list[dict[str, Any]]:
    r = api.get(f"/accounts/{aid}/activities")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert isinstance(data, list)
    return list(data)


def ids_of(api: Api, aid: str) -> list[str]:
    return [a["externalActivityId"] for a in activities_of(api, aid)]


def post(api: Api, *items: dict[str, Any]) -> Any:
    return api.post("/sales-activities", json={"activities": list(items)})


def created(index: int, ext: str) -> dict[str, Any]:
    return {"index": index, "externalActivityId": ext, "status": "created"}


# ---- creation ---------------------------------------------------------------------------


def test_call_and_email_are_created_and_stored(api: Api) -> None:
    aid = create_account(api, "acme.com")
    call = activity(
        "A-1",
        occurredAt="2026-04-01T10:00:00+02:00",
        subject="Intro call",
        accountName="Acme",
        ownerName="Olivia",
        ownerId="u-1",
        callTitle="Intro",
        durationMinutes=12.5,
        outcome="connected",
        direction="outbound",
        contacts=[
            {
                "email": "jane@acme.com",
                "name": "Jane Doe",
                "externalContactId": "c-1",
                "title": "CTO",
                "department": "Engineering",
                "seniority": "C-level",
                "phone": "+1 555 0100",
                "linkedinUrl": "https://linkedin.com/in/jane",
            }
        ],
    )
    email = activity(
        "A-2",
        activityType="email",
        occurredAt="2026-04-02",
        subject="Follow-up",
        openCount=3,
        clickCount=1,
        replyCount=0,
        **{"from": {"name": "Olivia", "email": "olivia@example.com"}},
        contacts=[{"email": "jane@acme.com"}, {"email": "bob@acme.com", "name": "Bob"}],
    )
    assert push(api, call, email) == [created(0, "A-1"), created(1, "A-2")]
    got = activities_of(api, aid)
    assert [a["externalActivityId"] for a in got] == ["A-2", "A-1"]  # newest first
    second, first = got
    assert {k: v for k, v in first.items() if k != "contacts"} == {
        "externalActivityId": "A-1",
        "activityType": "call",
        "occurredAt": "2026-04-01T08:00:00.000Z",
        "domain": "acme.com",
        "subject": "Intro call",
        "ownerEmail": "owner@example.com",
        "direction": "outbound",
        "outcome": "connected",
        "durationMinutes": 12.5,
        "openCount": None,
        "clickCount": None,
        "replyCount": None,
    }
    assert first["contacts"] == [{"email": "jane@acme.com", "name": "Jane Doe"}]
    assert second["activityType"] == "email"
    assert second["occurredAt"] == "2026-04-02T00:00:00.000Z"
    assert (second["openCount"], second["clickCount"], second["replyCount"]) == (3, 1, 0)
    assert sorted(second["contacts"], key=lambda c: c["email"]) == [
        {"email": "bob@acme.com", "name": "Bob"},
        {"email": "jane@acme.com", "name": "Jane Doe"},
    ]


def test_unknown_properties_are_ignored(api: Api) -> None:
    assert push(api, activity("A-1", sentiment="positive")) == [created(0, "A-1")]


def test_crm_mount_serves_activities(workspace: Workspace) -> None:
    aid = create_account(workspace.api, "acme.com")
    r = workspace.crm.post("/sales-activities", json={"activities": [activity("A-1")]})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"results": [created(0, "A-1")]}
    assert ids_of(workspace.crm, aid) == ["A-1"]


# ---- batch shape ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "rule", "text"),
    [
        ({}, "isArray", "activities must be an array"),
        ({"activities": None}, "isArray", "activities must be an array"),
        ({"activities": {"a": 1}}, "isArray", "activities must be an array"),
        ({"activities": []}, "arrayMinSize", "activities must contain at least 1 elements"),
        (
            {"activities": [activity(f"A-{i}") for i in range(51)]},
            "arrayMaxSize",
            "activities must contain no more than 50 elements",
        ),
    ],
    ids=["absent", "null", "object", "empty", "51"],
)
def test_activities_array_size_and_type(
    api: Api, body: dict[str, Any], rule: str, text: str
) -> None:
    err = one_error(api.post("/sales-activities", json=body))
    assert err == {"property": "activities", "path": "activities", "constraints": {rule: text}}


def test_fifty_activities_are_accepted(api: Api) -> None:
    assert push(api, *(activity(f"A-{i}") for i in range(50))) == [
        created(i, f"A-{i}") for i in range(50)
    ]


@pytest.mark.parametrize(
    "prop", ["externalActivityId", "activityType", "occurredAt", "domain", "ownerEmail"]
)
def test_required_properties(api: Api, prop: str) -> None:
    item = activity("A-1")
    del item[prop]
    err = one_error(post(api, activity("A-0"), item))
    assert err == {
        "property": prop,
        "path": f"activities.1.{prop}",
        "constraints": {"isNotEmpty": f"{prop} should not be empty"},
    }


@pytest.mark.parametrize("prop", ["externalActivityId", "activityType", "domain"])
@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "blank"])
def test_required_strings_not_blank(api: Api, prop: str, value: str) -> None:
    err = one_error(post(api, activity("A-1", **{prop: value})))
    assert err == {
        "property": prop,
        "path": f"activities.0.{prop}",
        "constraints": {"isNotEmpty": f"{prop} should not be empty"},
    }


def test_contacts_are_required_with_at_least_one(api: Api) -> None:
    item = activity("A-1")
    del item["contacts"]
    assert one_error(post(api, item)) == {
        "property": "contacts",
        "path": "activities.0.contacts",
        "constraints": {"isArray": "contacts must be an array"},
    }
    assert one_error(post(api, activity("A-1", contacts=[]))) == {
        "property": "contacts",
        "path": "activities.0.contacts",
        "constraints": {"arrayMinSize": "contacts must contain at least 1 elements"},
    }


@pytest.mark.parametrize("value", ["yesterday", "2026-02-30", "10:00", ""])
def test_occurred_at_must_be_iso8601(api: Api, value: str) -> None:
    assert one_error(post(api, activity("A-1", occurredAt=value))) == {
        "property": "occurredAt",
        "path": "activities.0.occurredAt",
        "constraints": {"isISO8601": "occurredAt must be a valid ISO 8601 date string"},
    }


@pytest.mark.parametrize("value", ["localhost", "acme com", "10.0.0.1", "http:///x"])
def test_domain_must_be_a_domain(api: Api, value: str) -> None:
    assert one_error(post(api, activity("A-1", domain=value))) == {
        "property": "domain",
        "path": "activities.0.domain",
        "constraints": {"isDomain": "domain must be a valid domain name"},
    }


@pytest.mark.parametrize("value", ["owner", "owner@", "owner@@example.com"])
def test_owner_email_must_be_an_email(api: Api, value: str) -> None:
    assert one_error(post(api, activity("A-1", ownerEmail=value))) == {
        "property": "ownerEmail",
        "path": "activities.0.ownerEmail",
        "constraints": {"isEmail": "ownerEmail must be an email"},
    }


def test_contact_email_is_required_and_valid(api: Api) -> None:
    r = post(
        api, activity("A-1", contacts=[{"email": "ok@acme.com"}, {"name": "x"}, {"email": "x"}])
    )
    assert validation_data(r) == [
        {
            "property": "email",
            "path": "activities.0.contacts.1.email",
            "constraints": {"isNotEmpty": "email should not be empty"},
        },
        {
            "property": "email",
            "path": "activities.0.contacts.2.email",
            "constraints": {"isEmail": "email must be an email"},
        },
    ]


@pytest.mark.parametrize("value", ["sideways", "Inbound", "", 1])
def test_direction_is_inbound_or_outbound(api: Api, value: Any) -> None:
    err = one_error(post(api, activity("A-1", direction=value)))
    assert (err["property"], err["path"]) == ("direction", "activities.0.direction")
    if isinstance(value, str):
        assert err["constraints"] == {
            "isIn": "direction must be one of the following values: inbound, outbound"
        }


def test_both_directions_are_accepted(api: Api) -> None:
    aid = create_account(api, "acme.com")
    push(
        api,
        activity("A-1", direction="inbound", occurredAt="2026-01-01"),
        activity("A-2", direction="outbound", occurredAt="2026-01-02"),
    )
    assert [a["direction"] for a in activities_of(api, aid)] == ["outbound", "inbound"]


@pytest.mark.parametrize("prop", ["openCount", "clickCount", "replyCount"])
def test_counts_are_non_negative_integers(api: Api, prop: str) -> None:
    assert one_error(post(api, activity("A-1", activityType="email", **{prop: -1}))) == {
        "property": prop,
        "path": f"activities.0.{prop}",
        "constraints": {"min": f"{prop} must not be less than 0"},
    }
    for bad in (1.5, "2", True):
        err = one_error(post(api, activity("A-1", activityType="email", **{prop: bad})))
        assert err == {
            "property": prop,
            "path": f"activities.0.{prop}",
            "constraints": {"isInt": f"{prop} must be an integer number"},
        }, bad


def test_counts_accept_zero_and_integral_numbers(api: Api) -> None:
    aid = create_account(api, "acme.com")
    push(api, activity("A-1", activityType="email", openCount=0, clickCount=2.0, replyCount=7))
    (got,) = activities_of(api, aid)
    assert (got["openCount"], got["clickCount"], got["replyCount"]) == (0, 2, 7)


def test_duration_is_a_number_not_below_zero(api: Api) -> None:
    assert one_error(post(api, activity("A-1", durationMinutes=-0.5))) == {
        "property": "durationMinutes",
        "path": "activities.0.durationMinutes",
        "constraints": {"min": "durationMinutes must not be less than 0"},
    }
    assert one_error(post(api, activity("A-1", durationMinutes="5"))) == {
        "property": "durationMinutes",
        "path": "activities.0.durationMinutes",
        "constraints": {
            "isNumber": "durationMinutes must be a number conforming to the specified constraints"
        },
    }
    aid = create_account(api, "acme.com")
    push(api, activity("A-1", durationMinutes=0), activity("A-2", durationMinutes=30))
    assert sorted(a["durationMinutes"] for a in activities_of(api, aid)) == [0, 30]


def test_shape_error_rejects_whole_batch_and_writes_nothing(api: Api) -> None:
    aid = create_account(api, "acme.com")
    r = post(api, activity("A-1"), activity("A-2"), activity("A-3", direction="up"))
    assert r.status_code == 400, r.text
    assert activities_of(api, aid) == []
    assert push(api, activity("A-1"), activity("A-2")) == [created(0, "A-1"), created(1, "A-2")]


# ---- create-only, skipped types ---------------------------------------------------------


def test_existing_id_fails_and_keeps_the_first(api: Api) -> None:
    aid = create_account(api, "acme.com")
    assert push(api, activity("A-1", subject="first")) == [created(0, "A-1")]
    assert push(api, activity("A-1", subject="second"), activity("A-2")) == [
        {
            "index": 0,
            "externalActivityId": "A-1",
            "status": "failed",
            "reason": "Activity 'A-1' already exists",
        },
        created(1, "A-2"),
    ]
    got = {a["externalActivityId"]: a for a in activities_of(api, aid)}
    assert sorted(got) == ["A-1", "A-2"]
    assert got["A-1"]["subject"] == "first"


def test_same_id_twice_in_one_request(api: Api) -> None:
    aid = create_account(api, "acme.com")
    results = push(api, activity("A-1", subject="one"), activity("A-1", subject="two"))
    assert results == [
        created(0, "A-1"),
        {
            "index": 1,
            "externalActivityId": "A-1",
            "status": "failed",
            "reason": "Activity 'A-1' already exists",
        },
    ]
    assert [a["subject"] for a in activities_of(api, aid)] == ["one"]


@pytest.mark.parametrize("kind", ["meeting", "task", "sms", "linkedin"])
def test_other_activity_types_are_skipped_never_400(api: Api, kind: str) -> None:
    aid = create_account(api, "acme.com")
    results = push(api, activity("A-1"), activity("A-2", activityType=kind))
    assert results[0] == created(0, "A-1")
    skipped = results[1]
    assert set(skipped) == {"index", "externalActivityId", "status", "reason"}
    assert (skipped["index"], skipped["externalActivityId"], skipped["status"]) == (
        1,
        "A-2",
        "skipped",
    )
    assert "call" in skipped["reason"] and "email" in skipped["reason"]
    assert ids_of(api, aid) == ["A-1"]
    # A skipped activity is not stored: the id is still free.
    assert push(api, activity("A-2")) == [created(0, "A-2")]


def test_mixed_batch_reports_each_item(api: Api) -> None:
    push(api, activity("A-0"))
    results = push(
        api,
        activity("A-1"),
        activity("A-2", activityType="meeting"),
        activity("A-0", activityType="email"),
        activity("A-3", activityType="email"),
    )
    assert [(r["index"], r["externalActivityId"], r["status"]) for r in results] == [
        (0, "A-1", "created"),
        (1, "A-2", "skipped"),
        (2, "A-0", "failed"),
        (3, "A-3", "created"),
    ]


def test_activity_ids_are_per_workspace(workspace: Workspace, other: Workspace) -> None:
    assert push(workspace.api, activity("A-1")) == [created(0, "A-1")]
    assert push(other.api, activity("A-1")) == [created(0, "A-1")]
    mine = create_account(workspace.api, "acme.com")
    theirs = create_account(other.api, "acme.com")
    push(other.api, activity("A-2"))
    assert ids_of(workspace.api, mine) == ["A-1"]
    assert sorted(ids_of(other.api, theirs)) == ["A-1", "A-2"]
    r = other.api.get(f"/accounts/{mine}/activities")
    assert r.status_code == 404, r.text
    assert r.json()["customMessage"] == f"Account '{mine}' not found"


# ---- contacts ---------------------------------------------------------------------------


def test_contacts_are_upserted_by_email(api: Api) -> None:
    aid = create_account(api, "acme.com")
    push(
        api,
        activity(
            "A-1", occurredAt="2026-01-01", contacts=[{"email": "Jane@Acme.com", "name": "J"}]
        ),
    )
    push(
        api,
        activity(
            "A-2",
            occurredAt="2026-01-02",
            contacts=[{"email": "jane@acme.com", "name": "Jane Doe"}, {"email": "bob@acme.com"}],
        ),
    )
    got = {a["externalActivityId"]: a for a in activities_of(api, aid)}
    # One contact per email: the later push updated it, so both activities show the new name.
    assert got["A-1"]["contacts"] == [{"email": "jane@acme.com", "name": "Jane Doe"}]
    assert sorted(got["A-2"]["contacts"], key=lambda c: c["email"]) == [
        {"email": "bob@acme.com", "name": None},
        {"email": "jane@acme.com", "name": "Jane Doe"},
    ]


def test_contact_fields_not_sent_are_kept(api: Api) -> None:
    aid = create_account(api, "acme.com")
    push(api, activity("A-1", contacts=[{"email": "jane@acme.com", "name": "Jane"}]))
    push(api, activity("A-2", contacts=[{"email": "jane@acme.com", "title": "CTO"}]))
    for a in activities_of(api, aid):
        assert a["contacts"] == [{"email": "jane@acme.com", "name": "Jane"}]


def test_same_contact_twice_in_one_activity_is_one_contact(api: Api) -> None:
    aid = create_account(api, "acme.com")
    push(
        api,
        activity(
            "A-1", contacts=[{"email": "jane@acme.com"}, {"email": "JANE@acme.com", "name": "J"}]
        ),
    )
    (got,) = activities_of(api, aid)
    assert got["contacts"] == [{"email": "jane@acme.com", "name": "J"}]


# ---- linking to accounts ----------------------------------------------------------------


def test_activity_links_by_normalised_domain(api: Api) -> None:
    acme = create_account(api, "acme.com")
    eu = create_account(api, "eu.acme.com")
    push(
        api,
        activity("A-1", domain="https://WWW.Acme.com:8443/deal?x=1#y"),
        activity("A-2", domain="eu.ACME.com."),
    )
    assert ids_of(api, acme) == ["A-1"]
    assert ids_of(api, eu) == ["A-2"]
    assert activities_of(api, acme)[0]["domain"] == "acme.com"


def test_activity_links_when_the_account_appears_later(api: Api) -> None:
    push(api, activity("A-1", domain="www.later.com"), activity("A-2", domain="never.com"))
    later = create_account(api, "later.com")
    assert ids_of(api, later) == ["A-1"]


def test_activities_are_newest_first(api: Api) -> None:
    aid = create_account(api, "acme.com")
    push(
        api,
        activity("A-mid", occurredAt="2026-02-01T00:00:00Z"),
        activity("A-old", occurredAt="2025-12-31T23:59:59Z"),
        activity("A-new", occurredAt="2026-02-01T00:00:00-01:00"),
    )
    assert ids_of(api, aid) == ["A-new", "A-mid", "A-old"]


def test_activities_of_account_errors(api: Api) -> None:
    r = api.get("/accounts/xyz/activities")
    assert r.status_code == 400, r.text
    assert r.json()["customMessage"] == "Invalid rtp_aid format"
    missing = "f" * 24
    r = api.get(f"/accounts/{missing}/activities")
    assert r.status_code == 404, r.text
    assert r.json()["customMessage"] == f"Account '{missing}' not found"
