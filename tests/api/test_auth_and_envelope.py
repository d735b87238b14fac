"""Spec sections 1-4: mounts, authentication, request format and the response envelope."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from intently.app import create_app
from intently.auth.service import generate_key, issue_key, set_api_access
from intently.settings import Settings
from tests.support.api import Api, Workspace

TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
MIB = 1024 * 1024


# ---- helpers ---------------------------------------------------------------------------


def envelope(r: httpx.Response, status: int, path: str) -> dict[str, Any]:
    """Check the common envelope fields and return the body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body, dict)
    assert body["statusCode"] == status
    assert body["path"] == path
    ts = body["timestamp"]
    assert TIMESTAMP_RE.match(ts), ts
    when = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - when) < timedelta(seconds=30)
    assert "data" in body
    return body


def business_error(
    r: httpx.Response, status: int, path: str, reason: str, custom: str
) -> dict[str, Any]:
    body = envelope(r, status, path)
    assert body["message"] == reason
    assert body["customMessage"] == custom
    assert body["data"] is None
    return body


def account(domain: str, name: str = "Acme") -> dict[str, Any]:
    return {"domain": domain, "name": name}


def push(api: Api, *domains: str) -> list[dict[str, Any]]:
    r = api.post("/accounts", json={"accounts": [account(d) for d in domains]})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["results"])


# Every authenticated endpoint, with a body that would succeed with a good key.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/accounts", None),
    ("GET", "/accounts/000000000000000000000000", None),
    ("GET", "/accounts/missing-external-ids", None),
    ("POST", "/accounts", {"accounts": [account("auth-check.com")]}),
    ("PUT", "/accounts/000000000000000000000000", {"customFields": {}}),
    ("PATCH", "/accounts/external-ids", {"mappings": [{"domain": "a.com", "externalId": "1"}]}),
    ("GET", "/accounts/custom-fields", None),
    ("POST", "/accounts/custom-field", {"label": "Tier", "labelType": "singleLineText"}),
    ("POST", "/deals", {"deals": [{"externalDealId": "D1", "name": "Deal"}]}),
    (
        "POST",
        "/sales-activities",
        {
            "activities": [
                {
                    "externalActivityId": "A1",
                    "activityType": "call",
                    "occurredAt": "2024-01-01T00:00:00Z",
                    "domain": "acme.com",
                    "ownerEmail": "owner@example.com",
                    "contacts": [{"email": "c@example.com"}],
                }
            ]
        },
    ),
    ("GET", "/segments", None),
    ("POST", "/segments", {"name": "S", "status": "active"}),
]
MOUNT_PREFIXES = ["/api/v1", "/api/v1/crm"]


def _ids(e: tuple[str, str, Any]) -> str:
    return f"{e[0]} {e[1]}"


# ---- section 2: authentication ---------------------------------------------------------


@pytest.mark.parametrize("prefix", MOUNT_PREFIXES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_ids)
def test_missing_key_is_401_on_every_endpoint(
    client: TestClient, prefix: str, endpoint: tuple[str, str, Any]
) -> None:
    method, path, body = endpoint
    r = Api(client, None, prefix).request(method, path, json=body)
    business_error(r, 401, prefix + path, "Unauthorized", "X-Api-Key header is required")


@pytest.mark.parametrize("prefix", MOUNT_PREFIXES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_ids)
def test_unknown_key_is_401_on_every_endpoint(
    client: TestClient, prefix: str, endpoint: tuple[str, str, Any]
) -> None:
    method, path, body = endpoint
    r = Api(client, "itly_" + uuid.uuid4().hex, prefix).request(method, path, json=body)
    business_error(r, 401, prefix + path, "Unauthorized", "Invalid API key")


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer {key}"},
        {"Authorization": "{key}"},
        {"X-Api-Token": "{key}"},
        {"Api-Key": "{key}"},
    ],
    ids=["bearer", "authorization", "x-api-token", "api-key"],
)
def test_no_other_auth_scheme(
    client: TestClient, workspace: Workspace, headers: dict[str, str]
) -> None:
    sent = {k: v.format(key=workspace.key) for k, v in headers.items()}
    r = client.get("/api/v1/accounts", headers=sent)
    business_error(r, 401, "/api/v1/accounts", "Unauthorized", "X-Api-Key header is required")


def test_key_in_query_string_is_not_accepted(client: TestClient, workspace: Workspace) -> None:
    for name in ("apiKey", "api_key", "X-Api-Key", "key"):
        r = client.get("/api/v1/accounts", params={name: workspace.key})
        business_error(r, 401, "/api/v1/accounts", "Unauthorized", "X-Api-Key header is required")


def test_header_name_is_case_insensitive(client: TestClient, workspace: Workspace) -> None:
    r = client.get("/api/v1/accounts", headers={"x-api-key": workspace.key})
    assert r.status_code == 200, r.text
    r = client.get("/api/v1/accounts", headers={"X-API-KEY": workspace.key})
    assert r.status_code == 200, r.text


def test_a_key_that_differs_by_one_character_is_invalid(api: Api) -> None:
    key = api.key
    assert key is not None
    last = "A" if key[-1] != "A" else "B"
    for bad in (key[:-1] + last, key[:-1], key + "x", key.upper(), " " + key + "x"):
        r = api.with_key(bad).get("/accounts")
        business_error(r, 401, "/api/v1/accounts", "Unauthorized", "Invalid API key")


def test_regenerating_a_key_revokes_the_old_one_at_once(engine: Any, workspace: Workspace) -> None:
    old = workspace.api
    assert old.get("/accounts").status_code == 200
    push(old, "before-rotation.com")
    new_key = generate_key(engine, workspace.name, workspace.email)
    assert new_key != workspace.key
    for prefix in MOUNT_PREFIXES:
        r = old.under(prefix).get("/accounts")
        business_error(r, 401, prefix + "/accounts", "Unauthorized", "Invalid API key")
        r = old.under(prefix).post("/accounts", json={"accounts": [account("rejected.com")]})
        business_error(r, 401, prefix + "/accounts", "Unauthorized", "Invalid API key")
    # The new key sees the same workspace, and the revoked key wrote nothing.
    new = old.with_key(new_key)
    r = new.get("/accounts")
    assert r.status_code == 200, r.text
    assert [a["domain"] for a in r.json()["data"]["data"]] == ["before-rotation.com"]
    # Rotating again revokes the second key too; the first stays revoked.
    newest = generate_key(engine, workspace.name, workspace.email)
    assert new.get("/accounts").status_code == 401
    assert old.get("/accounts").status_code == 401
    assert new.with_key(newest).get("/accounts").status_code == 200


def test_each_user_holds_their_own_key(engine: Any, workspace: Workspace) -> None:
    """A key belongs to a user: a second user's key leaves the first user's key working."""
    second = generate_key(engine, workspace.name, f"second-{uuid.uuid4().hex[:8]}@example.com")
    api2 = workspace.api.with_key(second)
    assert workspace.api.get("/accounts").status_code == 200
    assert api2.get("/accounts").status_code == 200
    push(api2, "shared-by-users.com")
    r = workspace.api.get("/accounts")
    assert [a["domain"] for a in r.json()["data"]["data"]] == ["shared-by-users.com"]


def test_keys_issued_at_once_leave_one_active_key(engine: Any, workspace: Workspace) -> None:
    """Spec section 2: a user holds at most one active key, however many requests issue
    one at the same time (two transactions on PostgreSQL each revoked the keys they saw
    and each inserted theirs)."""
    emails = [workspace.email, f"new-{uuid.uuid4().hex[:8]}@example.com"]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def issue(n: int) -> None:
        try:
            barrier.wait()
            if n % 2:
                generate_key(engine, workspace.name, emails[n % 4 // 2])
            else:
                issue_key(engine, workspace.id, emails[n % 4 // 2])
        except BaseException as exc:  # reported below
            errors.append(exc)

    for _ in range(3):
        threads = [threading.Thread(target=issue, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        with engine.connect() as conn:
            active = conn.execute(
                text(
                    "SELECT u.email, count(*) FROM api_keys k JOIN users u "
                    "ON u.workspace_id = k.workspace_id AND u.id = k.user_id "
                    "WHERE k.workspace_id = :ws AND k.revoked_at IS NULL GROUP BY u.email"
                ),
                {"ws": workspace.id},
            ).all()
        assert sorted(active) == sorted((e, 1) for e in emails)


def test_key_is_shown_once_and_differs_each_time(engine: Any, workspace: Workspace) -> None:
    keys = {generate_key(engine, workspace.name, workspace.email) for _ in range(3)}
    assert len(keys) == 3


@pytest.mark.parametrize("prefix", MOUNT_PREFIXES)
def test_api_access_switched_off(engine: Any, workspace: Workspace, prefix: str) -> None:
    api = workspace.api.under(prefix)
    assert api.get("/accounts").status_code == 200
    set_api_access(engine, workspace.name, False)
    try:
        for method, path, body in ENDPOINTS:
            r = api.request(method, path, json=body)
            business_error(
                r,
                401,
                prefix + path,
                "Unauthorized",
                "API access is not enabled for this workspace",
            )
        # Nothing was written while access was off.
        set_api_access(engine, workspace.name, True)
        r = api.get("/accounts")
        assert r.status_code == 200
        assert r.json()["data"]["data"] == []
    finally:
        set_api_access(engine, workspace.name, True)


def test_api_access_off_does_not_affect_other_workspaces(
    engine: Any, workspace: Workspace, other: Workspace
) -> None:
    set_api_access(engine, workspace.name, False)
    assert workspace.api.get("/accounts").status_code == 401
    assert other.api.get("/accounts").status_code == 200
    set_api_access(engine, workspace.name, True)
    assert workspace.api.get("/accounts").status_code == 200


def test_unknown_key_beats_access_switch(engine: Any, workspace: Workspace) -> None:
    """A revoked key stays `Invalid API key` whether or not the workspace has access."""
    old = workspace.api
    generate_key(engine, workspace.name, workspace.email)
    set_api_access(engine, workspace.name, False)
    r = old.get("/accounts")
    business_error(r, 401, "/api/v1/accounts", "Unauthorized", "Invalid API key")


# ---- section 1: mounts and service routes ---------------------------------------------


def test_both_mounts_serve_the_same_data(workspace: Workspace) -> None:
    created = push(workspace.crm, "crm-pushed.com")[0]
    assert created["status"] == "created"
    push(workspace.api, "v1-pushed.com")
    v1 = workspace.api.get("/accounts").json()["data"]
    crm = workspace.crm.get("/accounts").json()["data"]
    assert [a["domain"] for a in v1["data"]] == ["crm-pushed.com", "v1-pushed.com"]
    assert v1["data"] == crm["data"]
    r = workspace.crm.get(f"/accounts/{created['rtp_aid']}")
    assert r.status_code == 200, r.text
    assert r.json()["path"] == f"/api/v1/crm/accounts/{created['rtp_aid']}"
    assert r.json()["data"] == v1["data"][0]


@pytest.mark.parametrize(
    "path",
    ["/accounts", "/accounts/custom-fields", "/accounts/missing-external-ids", "/segments"],
)
def test_crm_mount_serves_every_read_endpoint(workspace: Workspace, path: str) -> None:
    for api in (workspace.api, workspace.crm):
        r = api.get(path)
        envelope(r, 200, api.prefix + path)


def test_crm_mount_serves_write_endpoints(workspace: Workspace) -> None:
    crm = workspace.crm
    r = crm.post("/accounts/custom-field", json={"label": "Tier", "labelType": "singleLineText"})
    assert r.status_code in (200, 201), r.text
    assert r.json()["data"][0]["key"] == "TIER_C"
    push(crm, "crm-write.com")
    r = crm.patch(
        "/accounts/external-ids",
        json={"mappings": [{"domain": "crm-write.com", "externalId": "X1"}]},
    )
    envelope(r, 200, "/api/v1/crm/accounts/external-ids")
    assert r.json()["data"] == {"matched": 1, "updated": 1, "notFound": []}
    r = crm.put("/accounts/X1", json={"customFields": {"TIER_C": "gold"}})
    envelope(r, 200, "/api/v1/crm/accounts/X1")
    assert r.json()["data"] == {"message": "Account updated successfully"}
    item = workspace.api.get("/accounts").json()["data"]["data"][0]
    assert item["externalId"] == "X1"
    assert item["customFields"] == {"TIER_C": "gold"}


def test_healthz_needs_no_key(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok"


def test_healthz_reports_an_unreachable_database(tmp_path: Any) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "db.sqlite3"
    app = create_app(Settings(database_url=f"sqlite:///{missing}", secret_key="s" * 32))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/healthz")
    assert r.status_code == 503, r.text
    app.state.intently.engine.dispose()


def test_openapi_document(client: TestClient) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for prefix in MOUNT_PREFIXES:
        for p in (
            "/accounts",
            "/accounts/missing-external-ids",
            "/accounts/external-ids",
            "/accounts/custom-field",
            "/accounts/custom-fields",
            "/deals",
            "/sales-activities",
            "/segments",
        ):
            assert prefix + p in paths, prefix + p
    for prefix in MOUNT_PREFIXES:
        puts = [
            p
            for p, ops in paths.items()
            if "put" in ops and re.fullmatch(re.escape(prefix) + r"/accounts/\{[^}]+\}", p)
        ]
        assert len(puts) == 1, puts


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.refs.append(value)


def test_docs_use_only_local_assets(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    parser = _Refs()
    parser.feed(html)
    assert parser.refs, "the docs page references no assets"
    for ref in parser.refs:
        assert ref.startswith("/docs-static/"), ref
    assert "http://" not in html and "https://" not in html
    assert "//cdn" not in html and "unpkg" not in html and "jsdelivr" not in html
    assert "/openapi.json" in html
    for ref in parser.refs:
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        assert len(asset.content) > 0
    js = [ref for ref in parser.refs if ref.endswith(".js")]
    assert js, "no script asset"


# ---- section 4: envelope ---------------------------------------------------------------


def test_success_envelope(api: Api) -> None:
    r = api.get("/accounts", params={"limit": 5})
    body = envelope(r, 200, "/api/v1/accounts")
    assert set(body) >= {"statusCode", "timestamp", "path", "data"}
    assert "customMessage" not in body
    assert isinstance(body["data"], dict)


def test_path_has_no_query_string_on_errors(api: Api) -> None:
    r = api.get("/accounts", params={"limit": "0", "x": "y"})
    body = envelope(r, 400, "/api/v1/accounts")
    assert body["message"] == "Bad Request"


def test_status_code_repeats_http_status_on_created(api: Api) -> None:
    r = api.post("/accounts/custom-field", json={"label": "Tier", "labelType": "singleLineText"})
    body = r.json()
    assert body["statusCode"] == r.status_code


def test_conflict_reason_phrase(api: Api) -> None:
    payload = {"label": "Tier", "labelType": "singleLineText"}
    assert api.post("/accounts/custom-field", json=payload).status_code in (200, 201)
    r = api.post("/accounts/custom-field", json=payload)
    business_error(
        r,
        409,
        "/api/v1/accounts/custom-field",
        "Conflict",
        "Custom field with key 'TIER_C' already exists",
    )


def test_not_found_reason_phrase(api: Api) -> None:
    aid = "0" * 24
    r = api.get(f"/accounts/{aid}")
    business_error(r, 404, f"/api/v1/accounts/{aid}", "Not Found", f"Account '{aid}' not found")


def test_validation_error_shape(api: Api) -> None:
    r = api.post("/accounts", json={"accounts": [{"name": "A"}, {"domain": "b.com", "name": "B"}]})
    body = envelope(r, 400, "/api/v1/accounts")
    assert body["message"] == "Bad Request"
    assert "customMessage" not in body
    assert body["data"] == [
        {
            "property": "domain",
            "path": "accounts.0.domain",
            "constraints": {"isNotEmpty": "domain should not be empty"},
        }
    ]


@pytest.mark.parametrize("prefix", MOUNT_PREFIXES)
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_unknown_route(workspace: Workspace, prefix: str, method: str) -> None:
    api = workspace.api.under(prefix)
    path = "/no-such-thing/at/all"
    kw: dict[str, Any] = {"json": {"x": 1}} if method in ("POST", "PUT", "PATCH") else {}
    r = api.request(method, path, **kw)
    business_error(r, 404, prefix + path, "Not Found", f"Cannot {method} {prefix}{path}")


def test_unknown_route_path_excludes_query(api: Api) -> None:
    r = api.get("/nothing-here", params={"a": "1"})
    business_error(r, 404, "/api/v1/nothing-here", "Not Found", "Cannot GET /api/v1/nothing-here")


def test_unknown_route_under_api_root(client: TestClient, workspace: Workspace) -> None:
    r = client.get("/api/v2/accounts", headers={"X-Api-Key": workspace.key})
    assert r.status_code == 404
    r = client.get("/api/v1", headers={"X-Api-Key": workspace.key})
    business_error(r, 404, "/api/v1", "Not Found", "Cannot GET /api/v1")


def test_method_not_served_is_an_unknown_route(api: Api) -> None:
    r = api.delete("/accounts")
    business_error(r, 404, "/api/v1/accounts", "Not Found", "Cannot DELETE /api/v1/accounts")
    r = api.patch("/accounts", json={"accounts": []})
    business_error(r, 404, "/api/v1/accounts", "Not Found", "Cannot PATCH /api/v1/accounts")


# ---- section 3: request format ---------------------------------------------------------

WRITES: list[tuple[str, str]] = [
    ("POST", "/accounts"),
    ("PATCH", "/accounts/external-ids"),
    ("PUT", "/accounts/000000000000000000000000"),
    ("POST", "/accounts/custom-field"),
    ("POST", "/deals"),
    ("POST", "/sales-activities"),
    ("POST", "/segments"),
]


@pytest.mark.parametrize("write", WRITES, ids=lambda w: f"{w[0]} {w[1]}")
@pytest.mark.parametrize(
    "ctype",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_non_json_content_type_is_415(api: Api, write: tuple[str, str], ctype: str | None) -> None:
    method, path = write
    headers = {"Content-Type": ctype} if ctype else {}
    r = api.request(method, path, content=b'{"accounts": []}', headers=headers)
    body = envelope(r, 415, "/api/v1" + path)
    assert body["message"] == "Unsupported Media Type"
    assert body["data"] is None


def test_415_writes_nothing(api: Api) -> None:
    r = api.post(
        "/accounts",
        content=b'{"accounts": [{"domain": "a.com", "name": "A"}]}',
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 415
    assert api.get("/accounts").json()["data"]["data"] == []


def test_json_with_charset_is_accepted(api: Api) -> None:
    r = api.post(
        "/accounts",
        content=b'{"accounts": [{"domain": "charset.com", "name": "A"}]}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["results"][0]["status"] == "created"


@pytest.mark.parametrize("write", WRITES, ids=lambda w: f"{w[0]} {w[1]}")
@pytest.mark.parametrize("raw", [b"{", b"{'a': 1}", b'{"a": }', b"not json", b'{"a": 1,}'])
def test_invalid_json_is_400(api: Api, write: tuple[str, str], raw: bytes) -> None:
    method, path = write
    r = api.request(method, path, content=raw, headers={"Content-Type": "application/json"})
    business_error(r, 400, "/api/v1" + path, "Bad Request", "Request body is not valid JSON")


@pytest.mark.parametrize("write", WRITES, ids=lambda w: f"{w[0]} {w[1]}")
@pytest.mark.parametrize(
    "raw", [b"[]", b'[{"domain": "a.com"}]', b'"text"', b"1", b"null", b"true"]
)
def test_non_object_top_level_is_400(api: Api, write: tuple[str, str], raw: bytes) -> None:
    method, path = write
    r = api.request(method, path, content=raw, headers={"Content-Type": "application/json"})
    business_error(r, 400, "/api/v1" + path, "Bad Request", "Request body must be a JSON object")


def _padded(size: int) -> bytes:
    """A valid push body of exactly `size` bytes (padded with whitespace: a 1 MiB string
    would be refused by the string-length limit, MAX_STRING_LENGTH)."""
    head = b'{"accounts": [{"domain": "padded.com", "name": "P"}]'
    tail = b"}"
    return head + b" " * (size - len(head) - len(tail)) + tail


def test_body_at_the_limit_is_accepted(api: Api) -> None:
    body = _padded(MIB)
    assert len(body) == MIB
    r = api.post("/accounts", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:500]
    assert r.json()["data"]["results"][0]["status"] == "created"


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/accounts"),
        ("PATCH", "/accounts/external-ids"),
        ("PUT", "/accounts/000000000000000000000000"),
    ],
)
def test_body_over_the_limit_is_413(api: Api, method: str, path: str) -> None:
    body = _padded(MIB + 1)
    r = api.request(method, path, content=body, headers={"Content-Type": "application/json"})
    env = envelope(r, 413, "/api/v1" + path)
    assert env["message"] == "Payload Too Large"
    assert env["data"] is None
    assert api.get("/accounts").json()["data"]["data"] == []


def test_chunked_body_over_the_limit_is_413(api: Api) -> None:
    body = _padded(2 * MIB)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    r = api.post("/accounts", content=chunks(), headers={"Content-Type": "application/json"})
    env = envelope(r, 413, "/api/v1/accounts")
    assert env["message"] == "Payload Too Large"
    assert api.get("/accounts").json()["data"]["data"] == []


def test_unknown_properties_in_post_items_are_ignored(api: Api) -> None:
    r = api.post(
        "/accounts",
        json={
            "accounts": [{"domain": "extra.com", "name": "Extra", "colour": "blue", "id": 7}],
            "whatever": True,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["results"][0]["status"] == "created"
    item = api.get("/accounts").json()["data"]["data"][0]
    assert "colour" not in item


# ---- section 4: 500 ---------------------------------------------------------------------


SECRET_SQL = "SELECT api_key_hash FROM api_keys WHERE secret = 'hunter2'"


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(f"boom in /work/main/src/intently/accounts/service.py: {SECRET_SQL}"),
        ProgrammingError(SECRET_SQL, {"secret": "hunter2"}, Exception("relation missing")),
        KeyError("hunter2"),
    ],
    ids=["runtime", "sql", "keyerror"],
)
def test_unexpected_failure_is_500_without_internals(
    api: Api, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    from intently.accounts import service

    def explode(*_a: Any, **_kw: Any) -> Any:
        raise exc

    monkeypatch.setattr(service, "list_accounts", explode)
    r = api.get("/accounts", params={"limit": 3})
    body = business_error(r, 500, "/api/v1/accounts", "Internal Server Error", body_custom(r))
    text = r.text
    for leak in ("hunter2", "SELECT", "Traceback", "service.py", "api_keys", "relation", "File "):
        assert leak not in text, leak
    assert set(body) == {"statusCode", "timestamp", "path", "message", "customMessage", "data"}


def body_custom(r: httpx.Response) -> str:
    """The 500's customMessage: any sentence, as long as it is a string."""
    custom = r.json().get("customMessage")
    assert isinstance(custom, str) and custom
    return custom
