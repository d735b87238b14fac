"""Helpers shared by the API tests: requests that set up data, and envelope checks."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import Api


def acc(domain: str, name: str = "Acme", **extra: Any) -> dict[str, Any]:
    return {"domain": domain, "name": name, **extra}


def custom_field(api: Api, label: str, label_type: str, options: list[str] | None = None) -> str:
    body: dict[str, Any] = {"label": label, "labelType": label_type}
    if options is not None:
        body["options"] = options
    r = api.post("/accounts/custom-field", json=body)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["data"][0]["key"])


def segment(api: Api, status: str = "active", name: str | None = None) -> str:
    r = api.post(
        "/segments", json={"name": name or f"seg-{uuid.uuid4().hex[:6]}", "status": status}
    )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["data"]["segmentId"])


def business(r: httpx.Response, status: int, custom: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["statusCode"] == status
    assert body["customMessage"] == custom
    assert body["data"] is None


def validation_data(r: Any) -> list[dict[str, Any]]:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["message"] == "Bad Request"
    assert "customMessage" not in body
    return list(body["data"])


def one_error(r: Any) -> dict[str, Any]:
    data = validation_data(r)
    assert len(data) == 1, data
    return dict(data[0])


def get_account(api: Api, aid: str) -> dict[str, Any]:
    r = api.get(f"/accounts/{aid}")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def listed(api: Api, **params: Any) -> list[dict[str, Any]]:
    r = api.get("/accounts", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["data"])
