"""Requests that set up data through the External API, and read it back."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.api import Api

# An account's scores, as the API names them.
SCORE_COLUMNS = (
    "rtp_account_score",
    "rtp_website_intent_score",
    "rtp_bombora_intent_score",
    "rtp_g2_intent_score",
    "rtp_advertising_activity_score",
)


def acc(domain: str, name: str = "Acme", **extra: Any) -> dict[str, Any]:
    return {"domain": domain, "name": name, **extra}


def push_account(api: Api, domain: str, **fields: Any) -> str:
    """Push one account named after its domain; its rtp_aid (the result's status unchecked)."""
    r = api.post("/accounts", json={"accounts": [{"domain": domain, "name": domain, **fields}]})
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["results"][0]["rtp_aid"])


def create_account(api: Api, domain: str, **fields: Any) -> str:
    """Create the account named after its domain, which must be new; its rtp_aid."""
    r = api.post("/accounts", json={"accounts": [{"domain": domain, "name": domain, **fields}]})
    assert r.status_code == 200, r.text
    result = r.json()["data"]["results"][0]
    assert result["status"] == "created", result
    return str(result["rtp_aid"])


def get_account(api: Api, aid: str) -> dict[str, Any]:
    r = api.get(f"/accounts/{aid}")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def listed(api: Api, **params: Any) -> list[dict[str, Any]]:
    r = api.get("/accounts", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["data"])


def signals_of(api: Api, aid: str, source: str | None = None) -> list[dict[str, Any]]:
    """The account's signals (of one source, when given): the first 100."""
    params: dict[str, Any] = {"limit": 100}
    if source is not None:
        params["source"] = source
    r = api.get(f"/accounts/{aid}/signals", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["data"])


def custom_field(
    api: Api, label: str, label_type: str = "singleLineText", options: list[str] | None = None
) -> str:
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
