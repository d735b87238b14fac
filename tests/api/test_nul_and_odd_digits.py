"""Inputs that no database column can hold, or that look like numbers and are not: each
gets a 400 naming the problem, on SQLite and PostgreSQL alike (never a 500)."""

from __future__ import annotations

import pytest

from tests.support.api import Api
from tests.support.envelope import business, one_error


def test_a_nul_character_in_a_body_string_names_the_property(api: Api) -> None:
    r = api.post("/accounts", json={"accounts": [{"domain": "nul.io", "name": "A\x00B"}]})
    err = one_error(r)
    assert err == {
        "property": "name",
        "path": "accounts.0.name",
        "constraints": {"noNulCharacters": "name must not contain NUL characters"},
    }
    assert api.get("/accounts", params={"domains": "nul.io"}).json()["data"]["data"] == []


def test_a_nul_character_in_a_key_is_refused(api: Api) -> None:
    r = api.post("/segments", json={"name": "ok", "x\x00": 1})
    assert one_error(r)["constraints"] == {
        "noNulCharacters": "x\x00 must not contain NUL characters"
    }


def test_an_escaped_backslash_u0000_is_ordinary_text(api: Api) -> None:
    r = api.post(
        "/accounts",
        content=b'{"accounts": [{"domain": "esc.io", "name": "a\\\\u0000b"}]}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["results"][0]["status"] == "created"


@pytest.mark.parametrize(
    "path",
    ["/accounts?lastSync=%00", "/ingest/rejects?reason=a%00b", "/segments?status=%00"],
)
def test_a_nul_character_in_the_query_is_refused(api: Api, path: str) -> None:
    business(api.get(path), 400, "Query parameters must not contain NUL characters (%00)")


def test_a_nul_character_in_the_path_is_refused(api: Api) -> None:
    r = api.delete("/accounts/custom-fields/a%00b")
    business(r, 400, "The path must not contain NUL characters (%00)")


@pytest.mark.parametrize("limit", ["\u00b2", "\u0663", "\uff11\uff10"])
def test_a_limit_in_other_digits_is_a_validation_error(api: Api, limit: str) -> None:
    err = one_error(api.get("/accounts", params={"limit": limit}))
    assert err["constraints"] == {"isInt": "limit must be an integer between 1 and 1000"}
