"""Request limits (issue 8): nesting depth, string lengths, tags and custom field counts,
items per batch. Each is configurable and answered with a validation error in the
envelope that names where the body broke it; nothing is written."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from intently.app import create_app
from intently.auth.repository import workspace_id_by_name
from intently.auth.service import generate_key
from intently.kit.body import decode_object
from intently.kit.errors import ValidationFailed
from intently.settings import Settings
from tests.support.api import Api
from tests.support.data import acc, custom_field, listed
from tests.support.envelope import one_error, validation_data

JSON = {"Content-Type": "application/json"}
# Rate limits off: these apps are for the body limits only.
NO_RATE_LIMITS: dict[str, Any] = {"rate_limit_per_minute": 0, "rate_limit_anonymous_per_minute": 0}
# Lowered limits, each small enough to reach with a small body.
LOW: dict[str, Any] = {
    "max_json_depth": 5,
    "max_string_length": 40,
    "max_tags": 3,
    "max_tag_length": 5,
    "max_custom_fields": 2,
    "max_batch_accounts": 20,
    "max_batch_deals": 3,
    "max_batch_activities": 2,
    "max_batch_mappings": 2,
}


@pytest.fixture(scope="module")
def low_client(database_url: str) -> Iterator[tuple[TestClient, Any]]:
    app = create_app(Settings(database_url=database_url, **LOW, **NO_RATE_LIMITS))
    yield TestClient(app, raise_server_exceptions=False), app.state.intently.engine
    app.state.intently.engine.dispose()


@pytest.fixture
def low(low_client: tuple[TestClient, Any]) -> Api:
    """A fresh workspace's key on the app with the LOW limits."""
    client, engine = low_client
    name = f"limits-{uuid.uuid4().hex[:12]}"
    key = generate_key(engine, name, f"{uuid.uuid4().hex[:8]}@example.com")
    with engine.connect() as conn:
        assert workspace_id_by_name(conn, name)
    return Api(client, key)


def raw_post(api: Api, path: str, raw: str, method: str = "POST") -> Any:
    return api.request(method, path, content=raw.encode(), headers=JSON)


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


# ---- nesting depth -------------------------------------------------------------------------


def test_a_body_nested_a_hundred_thousand_deep_gets_the_envelope(api: Api) -> None:
    """Deeper than the JSON decoder can go: still a 400 naming where it broke the limit."""
    depth = 100_000
    for raw, prop, path in [
        ('{"deep": ' + nested(depth) + "}", "deep", "deep" + ".0" * 31),
        ('{"deep": ' + '{"a": ' * depth + "1" + "}" * depth + "}", "a", "deep" + ".a" * 31),
        ('{"deep": ' + "[" * depth, "deep", "deep" + ".0" * 31),  # never closed
    ]:
        r = raw_post(api, "/accounts", raw)
        assert r.json()["path"] == "/api/v1/accounts"
        assert one_error(r) == {
            "property": prop,
            "path": path,
            "constraints": {"maxDepth": f"{prop} is nested deeper than the limit of 32 levels"},
        }
    assert listed(api) == []


def test_depth_at_the_default_limit_passes_and_one_more_is_refused(api: Api) -> None:
    # The top-level object is level 1: 31 arrays inside it make 32 levels.
    fits = '{"accounts": [{"domain": "d.io", "name": "D"}], "x": ' + nested(31) + "}"
    r = raw_post(api, "/accounts", fits)
    assert r.status_code == 200, r.text
    deeper = '{"accounts": [{"domain": "e.io", "name": "E"}], "x": ' + nested(32) + "}"
    assert one_error(raw_post(api, "/accounts", deeper)) == {
        "property": "x",
        "path": "x" + ".0" * 31,
        "constraints": {"maxDepth": "x is nested deeper than the limit of 32 levels"},
    }
    assert [a["domain"] for a in listed(api)] == ["d.io"]


def test_a_lowered_depth_limit_names_the_path(low: Api) -> None:
    # The object 1, accounts 2, accounts.0 3, customFields 4, K_C 5, the array in it 6.
    body = {"accounts": [acc("deep.io", customFields={"K_C": [["x"]]})]}
    err = one_error(low.post("/accounts", json=body))
    assert err == {
        "property": "K_C",
        "path": "accounts.0.customFields.K_C.0",
        "constraints": {"maxDepth": "K_C is nested deeper than the limit of 5 levels"},
    }
    # Five levels are fine (the unknown custom field fails the item, not the request).
    r = low.post("/accounts", json={"accounts": [acc("deep.io", customFields={"K_C": ["x"]})]})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["results"][0]["status"] == "failed"


def test_the_depth_limit_covers_every_json_endpoint(low: Api) -> None:
    too_deep: dict[str, Any] = {
        "a": {"b": {"c": {"d": {"e": {}}}}}
    }  # six levels with the top-level object
    for method, path in [
        ("POST", "/segments"),
        ("POST", "/segments/preview"),
        ("POST", "/signals"),
        ("POST", "/webhooks"),
        ("POST", "/deals"),
        ("PUT", "/scoring/model"),
        ("PUT", "/stages"),
        ("PUT", "/accounts/000000000000000000000000"),
    ]:
        r = low.request(method, path, json={"name": "n", **too_deep})
        assert one_error(r) == {
            "property": "e",
            "path": "a.b.c.d.e",
            "constraints": {"maxDepth": "e is nested deeper than the limit of 5 levels"},
        }, path


def test_the_largest_depth_setting_still_answers_a_body_too_deep_to_decode(
    database_url: str,
) -> None:
    app = create_app(Settings(database_url=database_url, max_json_depth=1000, **NO_RATE_LIMITS))
    try:
        client = TestClient(app, raise_server_exceptions=False)
        engine = app.state.intently.engine
        api = Api(client, generate_key(engine, f"deep-{uuid.uuid4().hex[:10]}", "d@example.com"))
        r = raw_post(api, "/accounts", '{"deep": ' + nested(100_000) + "}")
        err = one_error(r)
        assert err["path"] == "deep" + ".0" * 999
        assert err["constraints"] == {
            "maxDepth": "deep is nested deeper than the limit of 1000 levels"
        }
    finally:
        app.state.intently.engine.dispose()


def test_segment_rules_at_their_own_deepest_still_pass_at_the_default_depth(api: Api) -> None:
    """The rule language allows 10 levels; each level is an object and an array in JSON."""
    rule: dict[str, Any] = {"field": "name", "op": "in", "value": ["Acme", "Globex"]}
    other = {"field": "name", "op": "eq", "value": "x"}
    for n in range(9):  # nine wraps around the leaf: ten levels
        rule = {"all": [rule]} if n % 2 else {"any": [rule, other]}
    body = {"name": f"deep-{uuid.uuid4().hex[:6]}", "type": "dynamic", "rules": rule}
    r = api.post("/segments", json=body)
    assert r.status_code == 201, r.text
    stages = api.get("/stages")
    assert stages.status_code == 200, stages.text
    doc = stages.json()["data"]
    doc["stages"][0]["rule"] = rule
    put = api.put("/stages", json={"stages": doc["stages"]})
    assert put.status_code == 200, put.text


# ---- string lengths ------------------------------------------------------------------------


def test_a_string_over_the_default_length_names_its_path(api: Api) -> None:
    body = {"accounts": [acc("ok.io"), acc("long.io", name="n" * 10_001)]}
    err = one_error(api.post("/accounts", json=body))
    assert err == {
        "property": "name",
        "path": "accounts.1.name",
        "constraints": {"maxLength": "name must be shorter than or equal to 10000 characters"},
    }
    assert listed(api) == []
    at_limit = api.post("/accounts", json={"accounts": [acc("long.io", name="n" * 10_000)]})
    assert at_limit.status_code == 200, at_limit.text
    assert listed(api)[0]["name"] == "n" * 10_000


def test_string_length_counts_characters_not_bytes(low: Api) -> None:
    # 40 characters of three UTF-8 bytes each, and escapes: within a limit of 40.
    name = "\u20ac" * 38 + '"\\'
    r = low.post("/accounts", json={"accounts": [acc("euro.io", name=name)]})
    assert r.status_code == 200, r.text
    assert listed(low)[0]["name"] == name
    err = one_error(low.post("/accounts", json={"accounts": [acc("euro2.io", name=name + "x")]}))
    assert err["constraints"] == {
        "maxLength": "name must be shorter than or equal to 40 characters"
    }


def test_strings_in_arrays_and_object_keys_are_limited_too(low: Api) -> None:
    long = "k" * 41
    err = one_error(low.post("/segments", json={"name": "s", "extra": ["short", long]}))
    assert err == {
        "property": "extra",
        "path": "extra",
        "constraints": {
            "maxLength": "each value in extra must be shorter than or equal to 40 characters"
        },
    }
    body = {"accounts": [acc("keys.io", customFields={long: "v"})]}
    err = one_error(low.post("/accounts", json=body))
    assert err == {
        "property": "customFields",
        "path": "accounts.0.customFields",
        "constraints": {
            "maxLength": "each key in customFields must be shorter than or equal to 40 characters"
        },
    }
    err = one_error(low.put("/accounts/000000000000000000000000", json={long: 1}))
    assert err["path"] == "body"
    assert listed(low) == []


def test_the_string_limit_reaches_every_free_text_field(low: Api) -> None:
    long = "t" * 41
    signal = {"domain": "a.io", "source": "x", "type": long, "occurredAt": "2026-01-01"}
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/accounts/custom-field", {"label": "L", "options": ["a", long]}, "options"),
        ("POST", "/segments", {"name": long}, "name"),
        ("POST", "/signals", {"signals": [signal]}, "signals.0.type"),
        ("POST", "/deals", {"deals": [_deal(1) | {"stageLabel": long}]}, "deals.0.stageLabel"),
        ("POST", "/webhooks", {"url": "https://example.com/" + long}, "url"),
        (
            "PATCH",
            "/accounts/external-ids",
            {"mappings": [{"domain": "a.io", "externalId": long}]},
            "mappings.0.externalId",
        ),
    ]
    for method, path, body, where in cases:
        err = one_error(low.request(method, path, json=body))
        assert err["path"] == where, (path, err)
        assert list(err["constraints"]) == ["maxLength"], (path, err)


def test_a_nul_character_is_still_named(api: Api) -> None:
    err = one_error(api.post("/accounts", json={"accounts": [acc("nul.io", tags=["a\x00"])]}))
    assert err == {
        "property": "tags",
        "path": "accounts.0.tags.0",
        "constraints": {"noNulCharacters": "tags must not contain NUL characters"},
    }


# ---- tags and custom fields ----------------------------------------------------------------


def test_tags_over_the_default_count_and_length(api: Api) -> None:
    body = {"accounts": [acc(f"t{i}.io") for i in range(3)] + [acc("t3.io", tags=["x"] * 101)]}
    err = one_error(api.post("/accounts", json=body))
    assert err == {
        "property": "tags",
        "path": "accounts.3.tags",
        "constraints": {"arrayMaxSize": "tags must contain no more than 100 elements"},
    }
    body = {"accounts": [acc("t.io", tags=["ok", "x" * 101])]}
    err = one_error(api.post("/accounts", json=body))
    assert err == {
        "property": "tags",
        "path": "accounts.0.tags",
        "constraints": {
            "maxLength": "each value in tags must be shorter than or equal to 100 characters"
        },
    }
    assert listed(api) == []
    tags = [f"{i:03d}" + "x" * 97 for i in range(100)]
    r = api.post("/accounts", json={"accounts": [acc("t.io", tags=tags)]})
    assert r.status_code == 200, r.text
    assert listed(api)[0]["domain"] == "t.io"


def test_lowered_tag_limits_name_the_configured_values(low: Api) -> None:
    err = one_error(low.post("/accounts", json={"accounts": [acc("a.io", tags=list("abcd"))]}))
    assert err["constraints"] == {"arrayMaxSize": "tags must contain no more than 3 elements"}
    err = one_error(low.post("/accounts", json={"accounts": [acc("a.io", tags=["sixsix"])]}))
    assert err["constraints"] == {
        "maxLength": "each value in tags must be shorter than or equal to 5 characters"
    }
    r = low.post("/accounts", json={"accounts": [acc("a.io", tags=["a", "bb", "fivee"])]})
    assert r.status_code == 200, r.text
    # An upsert is held to the same limits.
    up = {"upsert": True, "accounts": [acc("a.io", tags=["a", "b", "c", "d"])]}
    err = one_error(low.post("/accounts", json=up))
    assert err["path"] == "accounts.0.tags"


def test_custom_field_counts_on_push_and_on_put(low: Api) -> None:
    keys = [custom_field(low, f"F{i}", "number") for i in range(3)]
    three = {k: 1 for k in keys}
    err = one_error(low.post("/accounts", json={"accounts": [acc("cf.io", customFields=three)]}))
    assert err == {
        "property": "customFields",
        "path": "accounts.0.customFields",
        "constraints": {"maxProperties": "customFields must contain no more than 2 keys"},
    }
    two = {k: 1 for k in keys[:2]}
    r = low.post("/accounts", json={"accounts": [acc("cf.io", customFields=two, externalId="E1")]})
    assert r.status_code == 200, r.text
    aid = r.json()["data"]["results"][0]["rtp_aid"]
    for api, ident in [(low, aid), (low.under("/api/v1/crm"), "E1")]:
        err = one_error(api.put(f"/accounts/{ident}", json={"customFields": three}))
        assert err == {
            "property": "customFields",
            "path": "customFields",
            "constraints": {"maxProperties": "customFields must contain no more than 2 keys"},
        }
    assert low.put(f"/accounts/{aid}", json={"customFields": {keys[2]: 5}}).status_code == 200
    got = low.get(f"/accounts/{aid}").json()["data"]["customFields"]
    assert got == {keys[0]: 1, keys[1]: 1, keys[2]: 5}


# ---- items per batch -----------------------------------------------------------------------


def _deal(i: int) -> dict[str, Any]:
    return {"externalDealId": f"D{i}", "name": f"Deal {i}"}


def _activity(i: int) -> dict[str, Any]:
    return {
        "externalActivityId": f"A{i}",
        "activityType": "call",
        "occurredAt": "2026-04-01T10:00:00Z",
        "domain": "acme.com",
        "ownerEmail": "owner@example.com",
        "contacts": [{"email": "jane@acme.com"}],
    }


BATCHES = [
    ("POST", "/accounts", "accounts", 20, lambda i: acc(f"b{i}.io")),
    ("POST", "/deals", "deals", 3, _deal),
    ("POST", "/sales-activities", "activities", 2, _activity),
    ("PATCH", "/accounts/external-ids", "mappings", 2, lambda i: acc(f"b{i}.io", externalId="X")),
]


@pytest.mark.parametrize("method,path,prop,most,item", BATCHES, ids=[b[2] for b in BATCHES])
def test_a_lowered_batch_limit_is_in_the_error(
    low: Api, method: str, path: str, prop: str, most: int, item: Any
) -> None:
    err = one_error(low.request(method, path, json={prop: [item(i) for i in range(most + 1)]}))
    assert err == {
        "property": prop,
        "path": prop,
        "constraints": {"arrayMaxSize": f"{prop} must contain no more than {most} elements"},
    }
    assert listed(low) == []
    r = low.request(method, path, json={prop: [item(i) for i in range(most)]})
    assert r.status_code == 200, r.text


def test_a_batch_over_the_limit_also_reports_its_items_errors(low: Api) -> None:
    items = [acc(f"m{i}.io") for i in range(21)]
    items[4] = {"name": "no domain"}
    data = validation_data(low.post("/accounts", json={"accounts": items}))
    by_path = {e["path"]: e["constraints"] for e in data}
    assert by_path == {
        "accounts": {"arrayMaxSize": "accounts must contain no more than 20 elements"},
        "accounts.4.domain": {"isNotEmpty": "domain should not be empty"},
    }


def test_the_spec_limit_holds_at_the_defaults(api: Api) -> None:
    err = one_error(api.post("/accounts", json={"accounts": [acc(f"s{i}.io") for i in range(101)]}))
    assert err["constraints"] == {"arrayMaxSize": "accounts must contain no more than 100 elements"}


def test_batch_limits_above_the_spec_are_refused_at_start_up(database_url: str) -> None:
    with pytest.raises(ValueError, match="max_batch_accounts"):
        Settings(database_url=database_url, max_batch_accounts=101)


# ---- the decoder's core, directly ----------------------------------------------------------


def _error(raw: str, depth: int = 32, length: int = 10_000) -> dict[str, Any]:
    with pytest.raises(ValidationFailed) as caught:
        decode_object(raw.encode(), depth, length)
    assert len(caught.value.errors) == 1
    return dict(caught.value.errors[0])


def test_the_text_scan_is_not_fooled_by_brackets_and_quotes_in_strings() -> None:
    # Decoding fails on recursion, so the scan of the text finds the place; strings full of
    # brackets, escaped quotes and colons must not move it.
    noise = '"[[{{\\"]]}}:,\\\\"'
    raw = '{"k\\"[{": [' + noise + ', {"x\\u00e9": ' + ("[" + noise + ", ") * 100_000
    err = _error(raw)
    assert err["path"] == 'k"[{.1.xé' + ".1" * 29
    assert err["constraints"] == {"maxDepth": "xé is nested deeper than the limit of 32 levels"}


def test_the_first_problem_in_document_order_is_reported() -> None:
    raw = '{"a": [1, {"b": "' + "x" * 50 + '"}], "c": [[[[[1]]]]], "d\\u0000": 1}'
    assert _error(raw, depth=4, length=40)["path"] == "a.1.b"
    assert _error(raw, depth=4, length=60)["path"] == "c.0.0.0"
    assert _error(raw, depth=10, length=60)["constraints"] == {
        "noNulCharacters": "d\x00 must not contain NUL characters"
    }
    assert decode_object(raw.replace("\\u0000", "").encode(), 10, 60)["c"] == [[[[[1]]]]]


def test_signal_fields_stored_in_bounded_columns_are_limited_to_their_width(api: Api) -> None:
    """signals.type and signals.source are VARCHAR(48) and (32) on PostgreSQL."""
    assert api.post("/sources", json={"name": "bounded_src"}).status_code == 201
    signal = {"domain": "b.io", "source": "bounded_src", "occurredAt": "2026-01-01T00:00:00Z"}
    r = api.post("/signals", json={"signals": [signal | {"type": "t" * 49}]})
    assert one_error(r) == {
        "property": "type",
        "path": "signals.0.type",
        "constraints": {"maxLength": "type must be shorter than or equal to 48 characters"},
    }
    r = api.post("/signals", json={"signals": [signal | {"type": "t", "source": "s" * 33}]})
    assert one_error(r)["constraints"] == {
        "maxLength": "source must be shorter than or equal to 32 characters"
    }
    r = api.post("/signals", json={"signals": [signal | {"type": "t" * 48}]})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["results"][0]["status"] == "created", r.text


def test_a_custom_field_label_must_leave_its_key_room_in_the_key_column(api: Api) -> None:
    """custom_fields.key is VARCHAR(300): the upper-cased label plus `_C` must fit."""
    for label in ["l" * 299, "\u00df" * 150]:  # ß upper-cases to SS: 300 characters
        r = api.post("/accounts/custom-field", json={"label": label, "labelType": "number"})
        assert one_error(r) == {
            "property": "label",
            "path": "label",
            "constraints": {"maxLength": "label must be shorter than or equal to 298 characters"},
        }
    r = api.post("/accounts/custom-field", json={"label": "l" * 298, "labelType": "number"})
    assert r.status_code == 201, r.text
    assert r.json()["data"][0]["key"] == "L" * 298 + "_C"
