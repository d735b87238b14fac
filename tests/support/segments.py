"""Helpers for the dynamic segment, upload and event tests: requests that set up data and
read back the event log."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.api import Api

HOT: dict[str, Any] = {"field": "tags", "op": "contains", "value": "hot"}
UNKNOWN_ID = "0123456789abcdef01234567"


def push(api: Api, *items: dict[str, Any]) -> list[str]:
    """Create or update accounts (upsert); their rtp_aids in order."""
    r = api.post("/accounts", json={"accounts": list(items), "upsert": True})
    assert r.status_code == 200, r.text
    results = r.json()["data"]["results"]
    assert all(x["status"] != "failed" for x in results), results
    return [str(x["rtp_aid"]) for x in results]


def account(domain: str, *tags: str, **extra: Any) -> dict[str, Any]:
    return {"domain": domain, "name": extra.pop("name", domain), "tags": list(tags), **extra}


def create(
    api: Api, name: str, rules: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, **fields}
    if rules is not None:
        body |= {"type": "dynamic", "rules": rules}
    r = api.post("/segments", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json()["data"])


def patch(api: Api, sid: str, **body: Any) -> dict[str, Any]:
    r = api.patch(f"/segments/{sid}", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def get_segment(api: Api, sid: str) -> dict[str, Any]:
    r = api.get(f"/segments/{sid}")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def member_ids(api: Api, sid: str) -> list[str]:
    r = api.get(f"/segments/{sid}/accounts", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [x["rtp_aid"] for x in r.json()["data"]["data"]]


def item_segments(api: Api, aid: str) -> list[dict[str, Any]]:
    r = api.get(f"/accounts/{aid}")
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["segments"])


def events(api: Api, **params: Any) -> list[dict[str, Any]]:
    """Every event the list returns for these filters, walking all pages."""
    out: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 1000, **params}
    while True:
        r = api.get("/events", params=query)
        assert r.status_code == 200, r.text
        page = r.json()["data"]
        out.extend(page["data"])
        if not page["hasNextPage"]:
            return out
        query = {"cursor": page["nextCursor"], "limit": query["limit"]}


def moves(api: Api, sid: str) -> list[tuple[str, str]]:
    """(type, rtp_aid) of the segment's entered/exited events, in log order."""
    return [
        (e["type"], e["rtp_aid"])
        for e in events(api, type="segment.entered,segment.exited")
        if e["segment"]["segmentId"] == sid
    ]


def validation(r: httpx.Response) -> dict[str, dict[str, str]]:
    """A validation error's constraints by path."""
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["message"] == "Bad Request" and "customMessage" not in body, body
    out: dict[str, dict[str, str]] = {}
    for d in body["data"]:
        assert set(d) == {"property", "path", "constraints"}, d
        assert d["property"] == [p for p in d["path"].split(".") if not p.isdigit()][-1], d
        out[d["path"]] = d["constraints"]
    return out


def business(r: httpx.Response, status: int, message: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["statusCode"] == status
    assert body["customMessage"] == message, body
    assert body["data"] is None


def unauthorised(r: httpx.Response) -> None:
    business(r, 401, "X-Api-Key header is required")
