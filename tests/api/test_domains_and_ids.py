"""Section 7 (domain normalisation) and section 8 (identifiers), through the API."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.support.api import Api
from tests.support.data import listed

ID_RE = re.compile(r"^[0-9a-f]{24}$")


# ---- helpers ---------------------------------------------------------------------------


def push_raw(api: Api, *domains: str, **body: Any) -> httpx.Response:
    return api.post(
        "/accounts", json={"accounts": [{"domain": d, "name": "N"} for d in domains], **body}
    )


def push(api: Api, *domains: str, **body: Any) -> list[dict[str, Any]]:
    r = push_raw(api, *domains, **body)
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["results"])


def invalid_domain(r: httpx.Response, path: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["message"] == "Bad Request"
    assert "customMessage" not in body
    hits = [e for e in body["data"] if e["path"] == path]
    assert hits, body["data"]
    assert hits[0]["property"] == "domain"
    assert "domain must be a valid domain name" in hits[0]["constraints"].values(), hits[0]


# ---- section 7 -------------------------------------------------------------------------

NORMALISED = [
    ("https://www.Acme.com:443/foo?x=1", "acme.com"),
    ("acme.com", "acme.com"),
    ("ACME.COM", "acme.com"),
    ("  acme.com  ", "acme.com"),
    ("\tacme.com\n", "acme.com"),
    ("www.acme.com", "acme.com"),
    ("WWW.Acme.Com", "acme.com"),
    ("http://acme.com", "acme.com"),
    ("https://acme.com/", "acme.com"),
    ("http://www.acme.com/path/to/page.html", "acme.com"),
    ("acme.com/path", "acme.com"),
    ("acme.com?q=1", "acme.com"),
    ("acme.com#top", "acme.com"),
    ("https://acme.com#frag", "acme.com"),
    ("acme.com:8080", "acme.com"),
    ("acme.com.", "acme.com"),
    ("www.acme.com.", "acme.com"),
    ("https://acme.com.:443/", "acme.com"),
    ("https://user:secret@www.acme.com/x", "acme.com"),
    ("http://user@acme.com", "acme.com"),
    ("eu.acme.com", "eu.acme.com"),
    ("https://EU.Acme.com/x", "eu.acme.com"),
    ("www.eu.acme.com", "eu.acme.com"),
    ("a.b.c.acme.co.uk", "a.b.c.acme.co.uk"),
    ("www.acme.co.uk", "acme.co.uk"),
    ("wwwacme.com", "wwwacme.com"),
    ("www2.acme.com", "www2.acme.com"),
    ("my-company.io", "my-company.io"),
    ("münchen.de", "xn--mnchen-3ya.de"),
    ("https://www.Bücher.example/katalog", "xn--bcher-kva.example"),
    ("MÜNCHEN.DE", "xn--mnchen-3ya.de"),
    ("xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
    ("例え.jp", "xn--r8jz45g.jp"),
]


@pytest.mark.parametrize("raw,expected", NORMALISED)
def test_domain_is_normalised_on_push(api: Api, raw: str, expected: str) -> None:
    result = push(api, raw)[0]
    assert result["status"] == "created"
    assert result["domain"] == expected
    assert [a["domain"] for a in listed(api)] == [expected]


@pytest.mark.parametrize(
    "raw",
    [
        "https://",
        "http://www.",
        "acme",
        "localhost",
        "https://acme/path",
        "ac me.com",
        "acme .com",
        "acme.com extra",
        "192.168.1.1",
        "http://10.0.0.1:8080/x",
        "https://8.8.8.8/",
        "[::1]",
        "http://[2001:db8::1]/",
        "::1",
        "www",
        ".",
        "..",
        "/path/only",
        "?q=1",
    ],
)
def test_not_a_domain(api: Api, raw: str) -> None:
    r = push_raw(api, "fine.com", raw)
    invalid_domain(r, "accounts.1.domain")
    assert listed(api) == []


@pytest.mark.parametrize("raw", ["", "   "])
def test_empty_domain(api: Api, raw: str) -> None:
    r = push_raw(api, raw)
    assert r.status_code == 400, r.text
    errors = r.json()["data"]
    assert errors[0]["path"] == "accounts.0.domain"
    assert "domain should not be empty" in errors[0]["constraints"].values()


def test_spellings_of_one_domain_are_one_account(api: Api) -> None:
    results = push(
        api,
        "acme.com",
        "https://www.ACME.com:443/a?b=c",
        "http://user@Acme.Com./",
        upsert=True,
    )
    assert [r["status"] for r in results] == ["created", "updated", "updated"]
    assert len({r["rtp_aid"] for r in results}) == 1
    assert [a["domain"] for a in listed(api)] == ["acme.com"]
    # Without upsert a different spelling is the same, existing, domain.
    again = push(api, "WWW.acme.com")[0]
    assert again["status"] == "failed"
    assert again["reason"] == "Account with domain 'acme.com' already exists"


def test_subdomain_is_a_different_account(api: Api) -> None:
    results = push(api, "acme.com", "eu.acme.com", "www.eu.acme.com")
    assert [r["status"] for r in results] == ["created", "created", "failed"]
    assert [a["domain"] for a in listed(api)] == ["acme.com", "eu.acme.com"]


def test_idna_and_unicode_spelling_match(api: Api) -> None:
    results = push(api, "münchen.de", "xn--mnchen-3ya.de")
    assert [r["status"] for r in results] == ["created", "failed"]


def test_domains_filter_is_normalised(api: Api) -> None:
    push(api, "acme.com", "eu.acme.com", "münchen.de")
    got = listed(api, domains='["https://www.ACME.com:443/foo?x=1","MÜNCHEN.de."]')
    assert [a["domain"] for a in got] == ["acme.com", "xn--mnchen-3ya.de"]
    got = listed(api, domains="http://EU.acme.com/path")
    assert [a["domain"] for a in got] == ["eu.acme.com"]


def test_domains_filter_invalid_domain(api: Api) -> None:
    r = api.get("/accounts", params={"domains": '["acme.com","not a domain"]'})
    assert r.status_code == 400, r.text
    assert "customMessage" not in r.json()
    assert r.json()["data"][0]["property"] == "domains"


def test_mappings_are_normalised(api: Api) -> None:
    push(api, "acme.com", "münchen.de")
    r = api.patch(
        "/accounts/external-ids",
        json={
            "mappings": [
                {"domain": "https://www.Acme.com:443/foo?x=1", "externalId": "A"},
                {"domain": "München.de", "externalId": "M"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"matched": 2, "updated": 2, "notFound": []}
    assert {a["domain"]: a["externalId"] for a in listed(api)} == {
        "acme.com": "A",
        "xn--mnchen-3ya.de": "M",
    }


def test_mapping_with_invalid_domain(api: Api) -> None:
    r = api.patch(
        "/accounts/external-ids", json={"mappings": [{"domain": "10.0.0.1", "externalId": "A"}]}
    )
    invalid_domain(r, "mappings.0.domain")


def test_segment_members_by_domain_are_normalised(api: Api) -> None:
    push(api, "acme.com")
    r = api.post("/segments", json={"name": "S", "status": "active"})
    sid = r.json()["data"]["segmentId"]
    r = api.post(f"/segments/{sid}/accounts", json={"domains": ["https://www.ACME.com/x"]})
    assert r.status_code == 200, r.text
    r = api.get(f"/segments/{sid}/accounts")
    assert [a["domain"] for a in r.json()["data"]["data"]] == ["acme.com"]


# ---- section 8 -------------------------------------------------------------------------


def test_ids_are_24_lowercase_hex(api: Api) -> None:
    results = push(api, *(f"id{i}.com" for i in range(20)))
    for r in results:
        assert ID_RE.match(r["rtp_aid"]), r["rtp_aid"]
    r = api.post("/segments", json={"name": "S", "status": "draft"})
    assert r.status_code in (200, 201), r.text
    assert ID_RE.match(r.json()["data"]["segmentId"])
    assert len({r["rtp_aid"] for r in results}) == 20


def test_ids_within_one_request_ascend(api: Api) -> None:
    results = push(api, *(f"batch{i}.com" for i in range(50)))
    aids = [r["rtp_aid"] for r in results]
    assert aids == sorted(aids)
    assert [a["rtp_aid"] for a in listed(api)] == aids


def test_ids_across_requests_ascend(api: Api) -> None:
    aids = []
    for i in range(8):
        aids.append(push(api, f"seq{i}.com")[0]["rtp_aid"])
        if i % 3 == 0:
            time.sleep(0.002)
    assert aids == sorted(aids)
    assert [a["domain"] for a in listed(api)] == [f"seq{i}.com" for i in range(8)]


def test_ids_are_time_ordered_across_workspaces(api: Api, other: Any) -> None:
    """Ids come from one time-ordered sequence, whichever workspace asks."""
    first = push(api, "a.com")[0]["rtp_aid"]
    time.sleep(0.002)
    second = push(other.api, "a.com")[0]["rtp_aid"]
    time.sleep(0.002)
    third = push(api, "b.com")[0]["rtp_aid"]
    assert first < second < third


def test_segment_ids_ascend(api: Api) -> None:
    sids = []
    for i in range(5):
        r = api.post("/segments", json={"name": f"S{i}-{uuid.uuid4().hex[:4]}", "status": "active"})
        sids.append(r.json()["data"]["segmentId"])
    assert sids == sorted(sids)
    r = api.get("/segments")
    assert [s["segmentId"] for s in r.json()["data"]["data"]] == sids


def test_upsert_keeps_the_id(api: Api) -> None:
    aid = push(api, "keep.com")[0]["rtp_aid"]
    assert push(api, "keep.com", upsert=True)[0]["rtp_aid"] == aid


@pytest.mark.parametrize(
    "bad",
    [
        "abc",
        "0" * 23,
        "0" * 25,
        "0123456789abcdef0123456g",
        "0123456789abcdef-1234567",
        "acme.com",
        "123",
    ],
)
@pytest.mark.parametrize(
    "method,suffix", [("GET", ""), ("PUT", ""), ("GET", "/deals"), ("GET", "/activities")]
)
def test_malformed_path_id_is_400(api: Api, bad: str, method: str, suffix: str) -> None:
    kw: dict[str, Any] = {"json": {"customFields": {}}} if method == "PUT" else {}
    r = api.request(method, f"/accounts/{bad}{suffix}", **kw)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["customMessage"] == "Invalid rtp_aid format"
    assert body["data"] is None


@pytest.mark.parametrize("suffix", ["", "/deals", "/activities"])
def test_well_formed_unknown_path_id_is_404(api: Api, suffix: str) -> None:
    aid = "0123456789abcdef01234567"
    r = api.get(f"/accounts/{aid}{suffix}")
    assert r.status_code == 404, r.text
    assert r.json()["customMessage"] == f"Account '{aid}' not found"


@pytest.mark.parametrize("bad", ["abc", "0" * 25, "zzzzzzzzzzzzzzzzzzzzzzzz"])
@pytest.mark.parametrize("method,suffix", [("GET", ""), ("PATCH", ""), ("GET", "/accounts")])
def test_malformed_segment_id_is_400(api: Api, bad: str, method: str, suffix: str) -> None:
    kw: dict[str, Any] = {"json": {"name": "x"}} if method == "PATCH" else {}
    r = api.request(method, f"/segments/{bad}{suffix}", **kw)
    assert r.status_code == 400, r.text
    # Spec section 8 names `Invalid rtp_aid format`; for a segment id this server says so
    # in the segment's words.
    assert r.json()["customMessage"] == "Invalid segmentId format"
