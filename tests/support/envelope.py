"""Checks of the response envelope: business errors and validation errors."""

from __future__ import annotations

from typing import Any

import httpx


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
