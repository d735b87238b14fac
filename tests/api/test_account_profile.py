"""The company profile on accounts (spec/api-v1.md "Account profile (extension fields)"):
accepted by E2 (create and upsert), validated with the field and value named, returned on
E1 items and single accounts, usable in segment rules."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from intently.accounts.tables import accounts
from intently.auth.repository import workspace_id_by_name
from intently.kit.db import write_tx
from tests.support.api import Api, Workspace
from tests.support.data import acc
from tests.support.segments import create, member_ids

PROFILE = {
    "industry": "Computer Software",
    "employeeCount": 250,
    "annualRevenue": 12_500_000.5,
    "country": "DE",
    "city": "Berlin",
    "logoUrl": "https://cdn.example.com/acme.png",
}
EXTENSION_KEYS = (*PROFILE, "rtp_fit_score", "rtp_grade")


def push(api: Api, items: list[dict[str, Any]], **body: Any) -> list[dict[str, Any]]:
    r = api.post("/accounts", json={"accounts": items, **body})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["results"])


def items(api: Api) -> dict[str, dict[str, Any]]:
    r = api.get("/accounts", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return {i["domain"]: i for i in r.json()["data"]["data"]}


def one(api: Api, aid: str) -> dict[str, Any]:
    r = api.get(f"/accounts/{aid}")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def test_profile_is_stored_and_returned(api: Api) -> None:
    [res] = push(api, [acc("acme.com", shortName="Acme", **PROFILE)])
    assert res["status"] == "created"
    it = items(api)["acme.com"]
    assert {k: it[k] for k in PROFILE} == PROFILE
    assert it["shortName"] == "Acme"
    # graded when created, under the default fit model: 250 employees, 12.5M USD, a known
    # industry and country
    assert it["rtp_fit_score"] > 0 and it["rtp_grade"][-1] == "4"  # no intent yet
    assert one(api, res["rtp_aid"]) == it


def test_unset_fields_are_null_and_a_plain_client_sees_them_null(api: Api) -> None:
    [res] = push(api, [acc("plain.com")])
    it = one(api, res["rtp_aid"])
    assert {k: it[k] for k in PROFILE} == dict.fromkeys(PROFILE)
    # nothing known fits nothing: the lowest fit letter and intent digit from the start
    assert (it["rtp_fit_score"], it["rtp_grade"]) == (0.0, "D4")


def test_types_on_the_wire(api: Api) -> None:
    """employeeCount is an integer (3.0 is accepted as one), annualRevenue a number."""
    [res] = push(api, [acc("n.com", employeeCount=3.0, annualRevenue=7)])
    r = api.get(f"/accounts/{res['rtp_aid']}")
    it = r.json()["data"]  # JSON "3" reads as int, "3.0" as float
    assert type(it["employeeCount"]) is int and it["employeeCount"] == 3
    assert isinstance(it["annualRevenue"], int | float) and it["annualRevenue"] == 7


def test_values_are_normalised(api: Api) -> None:
    [res] = push(
        api,
        [acc("norm.com", industry="  Banking ", country="fr", city=" Lyon", logoUrl="http://x.io")],
    )
    it = one(api, res["rtp_aid"])
    assert (it["industry"], it["country"], it["city"], it["logoUrl"]) == (
        "Banking",
        "FR",
        "Lyon",
        "http://x.io",
    )


def test_unknown_industry_is_kept_as_given(api: Api) -> None:
    [res] = push(api, [acc("odd.com", industry="Artisanal Cheese Logistics")])
    assert one(api, res["rtp_aid"])["industry"] == "Artisanal Cheese Logistics"


def test_upsert_keeps_fields_not_sent_and_changes_those_sent(api: Api) -> None:
    push(api, [acc("acme.com", shortName="Acme", **PROFILE)])
    [res] = push(api, [acc("acme.com", "Acme 2", city="Munich", employeeCount=300)], upsert=True)
    assert res["status"] == "updated"
    it = items(api)["acme.com"]
    assert it["name"] == "Acme 2"
    assert {k: it[k] for k in PROFILE} == PROFILE | {"city": "Munich", "employeeCount": 300}
    assert it["shortName"] == "Acme"


def test_upsert_of_a_profile_field_alone_is_seen_by_a_delta_sync(api: Api) -> None:
    push(api, [acc("acme.com")])
    since = api.get("/accounts").json()["data"]["syncTimestamp"]
    push(api, [acc("acme.com", country="US")], upsert=True)
    r = api.get("/accounts", params={"lastSync": since})
    assert [i["country"] for i in r.json()["data"]["data"]] == ["US"]


def test_upsert_without_profile_changes_nothing(api: Api) -> None:
    push(api, [acc("acme.com", **PROFILE)])
    since = api.get("/accounts").json()["data"]["syncTimestamp"]
    push(api, [acc("acme.com")], upsert=True)
    assert api.get("/accounts", params={"lastSync": since}).json()["data"]["data"] == []
    assert {k: items(api)["acme.com"][k] for k in PROFILE} == PROFILE


def _refused(r: httpx.Response, path: str) -> str:
    assert r.status_code == 400, r.text
    errors = r.json()["data"]
    for e in errors:
        assert set(e) == {"property", "path", "constraints"}
    hits = [e for e in errors if e["path"] == path]
    assert hits, errors
    assert hits[0]["property"] == path.rsplit(".", 1)[-1]
    return " / ".join(hits[0]["constraints"].values())


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("industry", 5, "industry must be a string, not 5"),
        ("industry", "x" * 201, "industry must be shorter than or equal to 200 characters"),
        ("employeeCount", "50", 'employeeCount must be an integer number, not "50"'),
        ("employeeCount", 2.5, "employeeCount must be an integer number, not 2.5"),
        ("employeeCount", True, "employeeCount must be an integer number, not true"),
        ("employeeCount", -1, "employeeCount must be between 0 and 10000000, not -1"),
        ("employeeCount", 10_000_001, "employeeCount must be between 0 and 10000000, not 10000001"),
        ("annualRevenue", "1M", 'annualRevenue must be a number, not "1M"'),
        ("annualRevenue", -0.5, "annualRevenue must be between 0 and 10000000000000 (USD), not"),
        ("annualRevenue", 2e13, "annualRevenue must be between 0 and 10000000000000 (USD), not"),
        ("country", "ZZ", 'country must be an ISO 3166-1 alpha-2 country code, not "ZZ"'),
        ("country", "Germany", 'country must be an ISO 3166-1 alpha-2 country code, not "Germany"'),
        ("country", 49, "country must be a string, not 49"),
        ("city", ["Paris"], 'city must be a string, not ["Paris"]'),
        ("logoUrl", "ftp://x.com/a.png", 'logoUrl must be an absolute http or https URL, not "ftp'),
        ("logoUrl", "acme.com/logo.png", "logoUrl must be an absolute http or https URL"),
        ("logoUrl", "https://x.io/" + "a" * 2048, "logoUrl must be shorter than or equal to 2048"),
    ],
)
def test_bad_profile_values_are_refused_naming_field_and_value(
    api: Api, field: str, value: Any, words: str
) -> None:
    r = api.post("/accounts", json={"accounts": [acc("ok.com"), acc("bad.com", **{field: value})]})
    assert words in _refused(r, f"accounts.1.{field}")
    assert items(api) == {}  # nothing of the batch was written


def test_a_bad_value_in_an_upsert_keeps_the_stored_profile(api: Api) -> None:
    push(api, [acc("acme.com", **PROFILE)])
    r = api.post(
        "/accounts", json={"accounts": [acc("acme.com", employeeCount=-5)], "upsert": True}
    )
    _refused(r, "accounts.0.employeeCount")
    assert {k: items(api)["acme.com"][k] for k in PROFILE} == PROFILE


def test_fit_score_and_grade_render_once_computed(workspace: Workspace, engine: Any) -> None:
    api = workspace.api
    [res] = push(api, [acc("fit.com")])
    # The fit model (another part of issue 17) writes these columns; written here as it will.
    with write_tx(engine) as conn:
        ws = workspace_id_by_name(conn, workspace.name)
        conn.execute(
            update(accounts)
            .where(accounts.c.workspace_id == ws, accounts.c.id == res["rtp_aid"])
            .values(rtp_fit_score=72.5, rtp_grade="B2")
        )
    it = one(api, res["rtp_aid"])
    assert (it["rtp_fit_score"], it["rtp_grade"]) == (72.5, "B2")


def test_segment_rule_on_the_profile(api: Api) -> None:
    push(
        api,
        [
            acc("big.de", industry="Software", employeeCount=5000, country="DE"),
            acc("small.de", industry="Software", employeeCount=20, country="DE"),
            acc("big.us", industry="Software", employeeCount=8000, country="US"),
            acc("unknown.de", country="DE"),  # no size: matches no comparison
            acc("bank.de", industry="Banking", employeeCount=900, annualRevenue=5e8, country="DE"),
        ],
    )
    rules = {
        "all": [
            {"field": "country", "op": "eq", "value": "DE"},
            {
                "any": [
                    {"field": "employeeCount", "op": "gte", "value": 1000},
                    {"field": "annualRevenue", "op": "gt", "value": 1e8},
                ]
            },
        ]
    }
    seg = create(api, "Big in Germany", rules)
    by_aid = {i["rtp_aid"]: d for d, i in items(api).items()}
    assert sorted(by_aid[a] for a in member_ids(api, seg["segmentId"])) == ["bank.de", "big.de"]
    # A profile change moves the account on the next refresh.
    push(api, [acc("small.de", employeeCount=1500)], upsert=True)
    r = api.post(f"/segments/{seg['segmentId']}/refresh")
    assert r.status_code == 200, r.text
    members = sorted(by_aid[a] for a in member_ids(api, seg["segmentId"]))
    assert members == ["bank.de", "big.de", "small.de"]


def test_item_json_is_valid_for_every_profile_shape(api: Api) -> None:
    """Odd characters in text fields come back intact (the database renders the JSON)."""
    odd = 'Zürich "Nord" \\ \u2028 <tag>'
    [res] = push(api, [acc("odd.ch", city=odd, industry="Ölindustrie")])
    r = api.get(f"/accounts/{res['rtp_aid']}")
    it = json.loads(r.text)["data"]
    assert (it["city"], it["industry"]) == (odd, "Ölindustrie")
