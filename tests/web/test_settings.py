"""Settings pages: users, API keys, webhooks and their delivery log, the API access switch,
custom fields. Admins only; no secret is ever rendered after the response that made it."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from intently.app import create_app
from intently.auth.users import create_user
from intently.settings import Settings
from intently.webhooks.service import verify_signature
from tests.support.api import Workspace
from tests.support.dashboard import Dashboard, sign_in
from tests.support.server import free_port
from tests.support.webhook_receiver import Receiver
from tests.support.webhooks import drain, make_events

XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
UNKNOWN_ID = "0123456789abcdef01234567"

GET_PAGES = [
    "/app/settings",
    "/app/settings/users",
    "/app/settings/api-keys",
    "/app/settings/webhooks",
    "/app/settings/custom-fields",
]

_SECRET = re.compile(r'class="secret" id="[^"]+">([^<]+)<')
_KEY_ROW = re.compile(r"/app/settings/api-keys/([0-9a-f]{24})/revoke")


def shown_secret(page: httpx.Response) -> str:
    """The one secret a create/rotate response shows."""
    found = _SECRET.findall(page.text)
    assert len(found) == 1, page.text
    return html.unescape(found[0])


def flash_error(page: httpx.Response) -> str:
    found = re.search(r'<p class="flash error"[^>]*>(.*?)</p>', page.text, re.S)
    assert found, page.text
    return html.unescape(found.group(1)).strip()


def every_settings_page(board: Dashboard, extra: tuple[str, ...] = ()) -> str:
    """The HTML of every settings page (and the given ones) joined together."""
    texts = []
    for path in [*GET_PAGES, *extra]:
        r = board.get(path)
        assert r.status_code == 200, (path, r.text)
        texts.append(r.text)
    return "\n".join(texts)


def webhook_ids(page: httpx.Response) -> list[str]:
    return re.findall(r'href="/app/settings/webhooks/([0-9a-f]{24})"', page.text)


# ---- access ----------------------------------------------------------------------------------


def test_every_page_renders_with_its_empty_state(
    make_dashboard: Callable[..., Dashboard], engine: Any
) -> None:
    # A workspace made from the dashboard side: an admin and no API key yet.
    name = f"ws-{uuid.uuid4().hex[:12]}"
    created = create_user(engine, name, f"first-{uuid.uuid4().hex[:6]}@example.com", role="admin")
    board = make_dashboard(
        "admin", Workspace(name, created.email, "", None, None, created.workspace_id)
    )  # type: ignore[arg-type]
    expected = {
        "/app/settings": "API access is",
        "/app/settings/users": created.email,
        "/app/settings/api-keys": "No API keys",
        "/app/settings/webhooks": "No webhooks",
        "/app/settings/custom-fields": "No custom fields",
    }
    for path, text in expected.items():
        r = board.get(path)
        assert r.status_code == 200, (path, r.text)
        assert text in r.text, path
        assert '<a href="/app/settings" aria-current="page">Settings</a>' in r.text, path


def test_anonymous_visitors_are_sent_to_sign_in(client: TestClient) -> None:
    anon = TestClient(client.app, raise_server_exceptions=False)
    for path in [*GET_PAGES, f"/app/settings/webhooks/{UNKNOWN_ID}"]:
        r = anon.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/app/login?next=/app/settings"), path


def all_routes(hook: str, key_id: str, user_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("GET", "/app/settings", {}),
        ("GET", "/app/settings/users", {}),
        ("GET", "/app/settings/api-keys", {}),
        ("GET", "/app/settings/webhooks", {}),
        ("GET", f"/app/settings/webhooks/{hook}", {}),
        ("GET", "/app/settings/custom-fields", {}),
        ("POST", "/app/settings/api-access", {"enabled": "off"}),
        ("POST", "/app/settings/users", {"email": "new@example.com", "role": "admin"}),
        ("POST", f"/app/settings/users/{user_id}/role", {"role": "member"}),
        ("POST", f"/app/settings/users/{user_id}/disable", {}),
        ("POST", "/app/settings/api-keys", {"email": "new@example.com"}),
        ("POST", f"/app/settings/api-keys/{key_id}/revoke", {}),
        ("POST", "/app/settings/webhooks", {"url": "http://8.8.8.8/x", "eventTypes": ["*"]}),
        ("POST", f"/app/settings/webhooks/{hook}/status", {"status": "disabled"}),
        ("POST", f"/app/settings/webhooks/{hook}/rotate-secret", {}),
        ("POST", f"/app/settings/webhooks/{hook}/test", {}),
        ("POST", f"/app/settings/webhooks/{hook}/delete", {}),
        ("POST", f"/app/settings/webhooks/{hook}/deliveries/{UNKNOWN_ID}/retry", {}),
        ("POST", "/app/settings/custom-fields", {"label": "Tier", "labelType": "number"}),
        ("POST", "/app/settings/custom-fields/deactivate", {"key": "TIER_C"}),
    ]


def test_members_get_403_on_every_route_and_nothing_changes(
    admin: Dashboard, member: Dashboard
) -> None:
    hook = webhook_ids(
        admin.post("/app/settings/webhooks", {"url": "http://8.8.8.8/in", "eventTypes": ["*"]})
    )[0]
    key_id = _KEY_ROW.findall(admin.get("/app/settings/api-keys").text)[0]
    users_page = admin.get("/app/settings/users").text
    admin_id = re.findall(r"/app/settings/users/([0-9a-f]{24})/role", users_page)[0]
    for method, path, data in all_routes(hook, key_id, admin_id):
        r = member.get(path) if method == "GET" else member.post(path, data)
        assert r.status_code == 403, (method, path, r.text)
        assert "for workspace admins" in r.text, (method, path)
    # Nothing the member tried took effect.
    assert admin.ws.api.get("/accounts/custom-fields").status_code == 200
    assert "No custom fields" in admin.get("/app/settings/custom-fields").text
    assert "new@example.com" not in admin.get("/app/settings/users").text
    assert admin.get(f"/app/settings/webhooks/{hook}").status_code == 200


def test_a_post_without_the_csrf_token_is_403_on_every_route(admin: Dashboard) -> None:
    hook = webhook_ids(
        admin.post("/app/settings/webhooks", {"url": "http://8.8.8.8/in", "eventTypes": ["*"]})
    )[0]
    key_id = _KEY_ROW.findall(admin.get("/app/settings/api-keys").text)[0]
    users_page = admin.get("/app/settings/users").text
    admin_id = re.findall(r"/app/settings/users/([0-9a-f]{24})/role", users_page)[0]
    for method, path, data in all_routes(hook, key_id, admin_id):
        if method == "GET":
            continue
        for token in ("", "forged-token"):
            r = admin.client.post(path, data={**data, "csrf_token": token}, follow_redirects=False)
            assert r.status_code == 403, (path, token, r.text)
            assert "security token" in r.text
    # The API stayed on, the key unrevoked, the webhook in place.
    assert admin.ws.api.get("/accounts/custom-fields").status_code == 200
    assert admin.get(f"/app/settings/webhooks/{hook}").status_code == 200


# ---- API access ----------------------------------------------------------------------------


def test_switching_api_access_off_answers_401_and_on_again_200(admin: Dashboard) -> None:
    assert admin.ws.api.get("/accounts/custom-fields").status_code == 200
    r = admin.post("/app/settings/api-access", {"enabled": "off"})
    assert r.status_code == 303 and r.headers["location"] == "/app/settings?done=api-off"
    page = admin.get(r.headers["location"])
    assert "API access is off" in page.text and "Switch API access on" in page.text
    refused = admin.ws.api.get("/accounts/custom-fields")
    assert refused.status_code == 401
    assert refused.json()["customMessage"] == "API access is not enabled for this workspace"
    assert "API access is off" in admin.get("/app/settings/api-keys").text
    r = admin.post("/app/settings/api-access", {"enabled": "on"})
    assert r.status_code == 303
    assert "Switch API access off" in admin.get("/app/settings").text
    assert admin.ws.api.get("/accounts/custom-fields").status_code == 200


def test_a_bad_api_access_value_names_the_field_and_value(admin: Dashboard) -> None:
    r = admin.post("/app/settings/api-access", {"enabled": "maybe"})
    assert r.status_code == 400
    assert flash_error(r) == "enabled should be on or off; got 'maybe'"
    assert admin.ws.api.get("/accounts/custom-fields").status_code == 200


# ---- users -----------------------------------------------------------------------------------


def test_inviting_a_user_shows_the_password_once_and_it_signs_in(
    admin: Dashboard, app: Any
) -> None:
    email = f"new-{uuid.uuid4().hex[:6]}@example.com"
    r = admin.post("/app/settings/users", {"email": email.upper(), "role": "member"})
    assert r.status_code == 200, r.text
    password = shown_secret(r)
    assert 'data-copy="invited-password"' in r.text
    assert f"{email} can now sign in" in r.text
    other = TestClient(app, raise_server_exceptions=False)
    assert sign_in(other, email, password).status_code == 303
    assert other.get("/app/settings", follow_redirects=False).status_code == 403
    later = every_settings_page(admin)
    assert password not in later
    row = re.search(rf"<td>{re.escape(email)}.*?</tr>", later, re.S)
    assert row and ">member<" in row.group(0) and ">yes<" in row.group(0)


def test_invite_refuses_bad_input_with_the_field_and_value(admin: Dashboard) -> None:
    r = admin.post("/app/settings/users", {"email": "not-an-email", "role": "member"})
    assert r.status_code == 400
    assert flash_error(r) == "email should be an email address; got 'not-an-email'"
    assert 'value="not-an-email"' in r.text  # the form keeps what was typed
    r = admin.post("/app/settings/users", {"email": "a@example.com", "role": "owner"})
    assert r.status_code == 400
    assert flash_error(r) == "role should be one of admin, member; got 'owner'"
    r = admin.post("/app/settings/users", {"email": admin.email, "role": "member"})
    assert r.status_code == 409
    assert flash_error(r) == f"A user with email '{admin.email}' already exists"
    # Markup is no email address: refused, and the value sent is shown as text.
    r = admin.post("/app/settings/users", {"email": XSS + "@x.com", "role": "member"})
    assert r.status_code == 400
    assert ESCAPED in r.text and XSS not in r.text


def user_id_of(board: Dashboard, email: str) -> str:
    page = board.get("/app/settings/users").text
    row = re.search(
        rf"<td>{re.escape(email)}.*?/app/settings/users/([0-9a-f]{{24}})/role", page, re.S
    )
    assert row, page
    return row.group(1)


def test_roles_change_and_the_last_admin_is_kept(admin: Dashboard, member: Dashboard) -> None:
    me = user_id_of(admin, admin.email)
    r = admin.post(f"/app/settings/users/{me}/role", {"role": "member"})
    assert r.status_code == 409
    assert flash_error(r) == "The last admin cannot stop being an admin"
    r = admin.post(f"/app/settings/users/{me}/disable")
    assert r.status_code == 409
    assert flash_error(r) == "The last admin cannot be removed"

    them = user_id_of(admin, member.email)
    r = admin.post(f"/app/settings/users/{them}/role", {"role": "admin"})
    assert r.status_code == 303 and r.headers["location"] == "/app/settings/users?done=role"
    assert "Role changed." in admin.get(r.headers["location"]).text
    assert member.get("/app/settings").status_code == 200  # now an admin
    r = admin.post(f"/app/settings/users/{them}/role", {"role": "superuser"})
    assert r.status_code == 400
    assert flash_error(r) == "role should be one of admin, member; got 'superuser'"
    # With two admins, one may step down; Settings is then closed to them.
    r = admin.post(f"/app/settings/users/{me}/role", {"role": "member"})
    assert r.status_code == 303 and r.headers["location"] == "/app/"
    assert admin.get("/app/settings").status_code == 403


def test_removing_sign_in_ends_the_users_sessions(admin: Dashboard, member: Dashboard) -> None:
    them = user_id_of(admin, member.email)
    r = admin.post(f"/app/settings/users/{them}/disable")
    assert r.status_code == 303
    page = admin.get(r.headers["location"]).text
    assert "Sign-in removed" in page
    row = re.search(rf"<td>{re.escape(member.email)}.*?</tr>", page, re.S)
    assert row and "no (API key only)" in row.group(0)
    assert f"/app/settings/users/{them}/disable" not in page
    assert member.get("/app/settings").status_code == 303  # signed out
    assert sign_in(member.client, member.email, member.password).status_code == 401


def test_another_workspaces_user_is_404(
    admin: Dashboard, make_dashboard: Callable[..., Dashboard]
) -> None:
    stranger = make_dashboard("admin")
    theirs = user_id_of(stranger, stranger.email)
    r = admin.post(f"/app/settings/users/{theirs}/role", {"role": "member"})
    assert r.status_code == 404 and flash_error(r) == f"User '{theirs}' not found"
    r = admin.post(f"/app/settings/users/{theirs}/disable")
    assert r.status_code == 404
    assert stranger.get("/app/settings").status_code == 200  # still an admin, still in


# ---- API keys -------------------------------------------------------------------------------


def test_a_generated_key_works_once_shown_and_stops_when_revoked(
    admin: Dashboard, client: TestClient
) -> None:
    email = f"crm-{uuid.uuid4().hex[:6]}@example.com"
    r = admin.post("/app/settings/api-keys", {"email": email})
    assert r.status_code == 200, r.text
    key = shown_secret(r)
    assert key.startswith("itly_") and 'data-copy="new-api-key"' in r.text
    got = client.get("/api/v1/accounts/custom-fields", headers={"X-Api-Key": key})
    assert got.status_code == 200, got.text

    page = admin.get("/app/settings/api-keys")
    assert key not in page.text
    assert f"<code>{key[:11]}…</code>" in page.text
    row = re.search(rf"<code>{re.escape(key[:11])}…</code>.*?</tr>", page.text, re.S)
    assert row and email in row.group(0) and ">active<" in row.group(0)
    # The new user holds a key but cannot sign in.
    users_row = re.search(
        rf"<td>{re.escape(email)}.*?</tr>", admin.get("/app/settings/users").text, re.S
    )
    assert users_row and "no (API key only)" in users_row.group(0)

    key_id = re.search(
        rf"<code>{re.escape(key[:11])}….*?/app/settings/api-keys/([0-9a-f]{{24}})/revoke",
        page.text,
        re.S,
    )
    assert key_id
    r = admin.post(f"/app/settings/api-keys/{key_id.group(1)}/revoke")
    assert r.status_code == 303 and r.headers["location"] == "/app/settings/api-keys?done=revoked"
    refused = client.get("/api/v1/accounts/custom-fields", headers={"X-Api-Key": key})
    assert refused.status_code == 401 and refused.json()["customMessage"] == "Invalid API key"
    after = admin.get(r.headers["location"])
    assert "API key revoked" in after.text
    row = re.search(rf"<code>{re.escape(key[:11])}…</code>.*?</tr>", after.text, re.S)
    assert row and "revoked " in row.group(0) and "/revoke" not in row.group(0)
    r = admin.post(f"/app/settings/api-keys/{key_id.group(1)}/revoke")
    assert r.status_code == 409 and flash_error(r) == f"API key {key[:11]}… is already revoked"
    assert key not in every_settings_page(admin)


def test_a_new_key_for_a_user_replaces_the_old_one(admin: Dashboard, client: TestClient) -> None:
    # The fixture's owner key, regenerated from the page: the old one stops at once.
    old = admin.ws.key
    new = shown_secret(admin.post("/app/settings/api-keys", {"email": admin.ws.email}))
    assert new != old
    assert (
        client.get("/api/v1/accounts/custom-fields", headers={"X-Api-Key": old}).status_code == 401
    )
    assert (
        client.get("/api/v1/accounts/custom-fields", headers={"X-Api-Key": new}).status_code == 200
    )
    page = admin.get("/app/settings/api-keys").text
    assert page.count(">active<") == 1 and old not in page and new not in page


def test_generate_refuses_a_bad_email_naming_it(admin: Dashboard) -> None:
    r = admin.post("/app/settings/api-keys", {"email": "nobody"})
    assert r.status_code == 400
    assert flash_error(r) == "email should be an email address; got 'nobody'"
    assert 'class="secret"' not in r.text
    r = admin.post("/app/settings/api-keys", {"email": XSS})
    assert r.status_code == 400 and ESCAPED in r.text and XSS not in r.text


def test_another_workspaces_key_is_404_and_stays_valid(
    admin: Dashboard, make_dashboard: Callable[..., Dashboard], client: TestClient
) -> None:
    stranger = make_dashboard("admin")
    theirs = _KEY_ROW.findall(stranger.get("/app/settings/api-keys").text)[0]
    assert theirs not in admin.get("/app/settings/api-keys").text
    r = admin.post(f"/app/settings/api-keys/{theirs}/revoke")
    assert r.status_code == 404 and flash_error(r) == f"API key '{theirs}' not found"
    assert stranger.ws.api.get("/accounts/custom-fields").status_code == 200
    r = admin.post("/app/settings/api-keys/not-an-id/revoke")
    assert r.status_code == 404


def test_the_key_list_is_paginated(admin: Dashboard) -> None:
    # One user's keys: each new one revokes the previous, so the list grows by one.
    email = f"rot-{uuid.uuid4().hex[:6]}@example.com"
    for _ in range(52):
        admin.post("/app/settings/api-keys", {"email": email})
    first = admin.get("/app/settings/api-keys").text
    ids = _KEY_ROW.findall(first)
    assert len(ids) == 1  # only the newest is active, so revocable
    prefixes = re.findall(r"<td><code>(itly_[^<]+)…</code></td>", first)
    assert len(prefixes) == 50
    older = re.search(r'href="(/app/settings/api-keys\?before=[0-9a-f]{24})"', first)
    assert older
    second = admin.get(older.group(1))
    assert second.status_code == 200
    rest = re.findall(r"<td><code>(itly_[^<]+)…</code></td>", second.text)
    assert len(rest) == 3 and not set(rest) & set(prefixes)  # 52 + the owner's key
    assert "?before=" not in second.text
    r = admin.get("/app/settings/api-keys?before=nope")
    assert r.status_code == 400 and "before should be a key id; got 'nope'" in html.unescape(r.text)


# ---- webhooks ------------------------------------------------------------------------------


def test_creating_a_webhook_shows_its_secret_once(admin: Dashboard) -> None:
    r = admin.post(
        "/app/settings/webhooks",
        {
            "url": "http://8.8.8.8/in",
            "eventTypes": ["segment.entered", "stage.changed"],
            "description": XSS,
        },
    )
    assert r.status_code == 200, r.text
    secret = shown_secret(r)
    assert secret.startswith("whsec_") and 'data-copy="webhook-secret"' in r.text
    assert XSS not in r.text and ESCAPED in r.text
    [hook] = webhook_ids(admin.get("/app/settings/webhooks"))
    detail = admin.get(f"/app/settings/webhooks/{hook}")
    assert detail.status_code == 200
    assert "http://8.8.8.8/in" in detail.text and "segment.entered" in detail.text
    assert "No deliveries yet" in detail.text and ESCAPED in detail.text
    api = admin.ws.api.get(f"/webhooks/{hook}").json()["data"]
    assert api["eventTypes"] == ["segment.entered", "stage.changed"] and api["description"] == XSS
    assert secret not in every_settings_page(admin, (f"/app/settings/webhooks/{hook}",))


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (
            {"url": "ftp://example.com/x", "eventTypes": ["*"]},
            400,
            "url: url must be an http or https URL; got 'ftp://example.com/x'",
        ),
        (
            {"url": "http://127.0.0.1:9/hook", "eventTypes": ["*"]},
            400,
            "url: url refused: host '127.0.0.1' is a loopback address (127.0.0.1); private "
            "targets are refused unless the operator allows them: their addresses or networks "
            "in INTENTLY_OUTBOUND_ALLOW, or all with INTENTLY_WEBHOOK_ALLOW_PRIVATE=true",
        ),
        (
            {"url": "http://8.8.8.8/in"},
            400,
            "eventTypes: eventTypes must contain at least 1 elements",
        ),
        (
            {"url": "http://8.8.8.8/in", "eventTypes": ["account.deleted"]},
            400,
            "eventTypes has unknown event type 'account.deleted'",
        ),
        (
            {"url": "http://8.8.8.8/in", "eventTypes": ["*"], "description": "x" * 501},
            400,
            "description must be at most 500 characters; got 501",
        ),
    ],
)
def test_a_bad_webhook_is_refused_naming_the_field_and_value(
    admin: Dashboard, data: dict[str, Any], status: int, message: str
) -> None:
    r = admin.post("/app/settings/webhooks", data)
    assert r.status_code == status, r.text
    assert message in flash_error(r)
    assert 'class="secret"' not in r.text
    assert "No webhooks" in r.text
    if data.get("url"):
        assert f'value="{data["url"]}"' in r.text  # kept in the form


def test_a_url_with_markup_is_shown_escaped(admin: Dashboard) -> None:
    r = admin.post("/app/settings/webhooks", {"url": "http://" + XSS, "eventTypes": ["*"]})
    assert r.status_code == 400 and XSS not in r.text and "&lt;script&gt;" in r.text


def test_disable_enable_rotate_and_delete(admin: Dashboard) -> None:
    created = admin.post(
        "/app/settings/webhooks", {"url": "http://8.8.8.8/in", "eventTypes": ["*"]}
    )
    first = shown_secret(created)
    [hook] = webhook_ids(admin.get("/app/settings/webhooks"))
    base = f"/app/settings/webhooks/{hook}"

    r = admin.post(f"{base}/status", {"status": "disabled"})
    assert r.status_code == 303 and r.headers["location"] == f"{base}?done=disabled"
    page = admin.get(r.headers["location"]).text
    assert ">disabled<" in page and "Disabled by a user" in page and ">Enable<" in page
    assert admin.ws.api.get(f"/webhooks/{hook}").json()["data"]["status"] == "disabled"
    r = admin.post(f"{base}/status", {"status": "active"})
    assert r.status_code == 303
    assert admin.ws.api.get(f"/webhooks/{hook}").json()["data"]["status"] == "active"
    r = admin.post(f"{base}/status", {"status": "paused"})
    assert (
        r.status_code == 400
        and "status should be active or disabled; got 'paused'" in html.unescape(r.text)
    )

    r = admin.post(f"{base}/rotate-secret")
    assert r.status_code == 200
    second = shown_secret(r)
    assert second.startswith("whsec_") and second != first and first not in r.text
    later = every_settings_page(admin, (base,))
    assert first not in later and second not in later

    r = admin.post(f"{base}/delete")
    assert r.status_code == 303 and r.headers["location"] == "/app/settings/webhooks?done=deleted"
    assert "No webhooks" in admin.get(r.headers["location"]).text
    assert admin.get(base).status_code == 404


def test_another_workspaces_webhook_is_404(
    admin: Dashboard, make_dashboard: Callable[..., Dashboard]
) -> None:
    stranger = make_dashboard("admin")
    stranger.post("/app/settings/webhooks", {"url": "http://8.8.8.8/in", "eventTypes": ["*"]})
    [hook] = webhook_ids(stranger.get("/app/settings/webhooks"))
    base = f"/app/settings/webhooks/{hook}"
    assert hook not in admin.get("/app/settings/webhooks").text
    assert admin.get(base).status_code == 404
    for path, data in [
        (f"{base}/status", {"status": "disabled"}),
        (f"{base}/rotate-secret", {}),
        (f"{base}/test", {}),
        (f"{base}/delete", {}),
        (f"{base}/deliveries/{UNKNOWN_ID}/retry", {}),
    ]:
        r = admin.post(path, data)
        assert r.status_code == 404, (path, r.text)
        assert f"Webhook &#39;{hook}&#39; not found" in r.text
    assert stranger.get(base).status_code == 200
    assert admin.get("/app/settings/webhooks/nope").status_code == 400


# Webhooks that reach a receiver on 127.0.0.1 need an app whose settings allow private
# targets (as an operator's internal receivers would).
FAST = {
    "webhook_allow_private": True,
    "webhook_timeout_s": 0.5,
    "webhook_max_attempts": 2,
    "webhook_backoff_base_s": 0.05,
    "webhook_backoff_max_s": 0.1,
    "webhook_concurrency": 4,
}


@pytest.fixture(scope="module")
def wh_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, **FAST)


@pytest.fixture(scope="module")
def wh_app(wh_settings: Settings) -> Iterator[Any]:
    app = create_app(wh_settings)
    yield app
    app.state.intently.engine.dispose()


@pytest.fixture
def hook_admin(wh_app: Any, make_workspace: Callable[[], Workspace], engine: Any) -> Dashboard:
    ws = make_workspace()
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery " + uuid.uuid4().hex[:6]
    create_user(engine, ws.name, email, password=password, role="admin")
    client = TestClient(wh_app, raise_server_exceptions=False)
    assert sign_in(client, email, password).status_code == 303
    board = Dashboard(client, ws, email, password, "admin")
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/app/settings").text)
    assert found
    board.csrf = found.group(1)
    return board


def test_the_test_ping_reports_success_and_failure(
    hook_admin: Dashboard, receiver: Receiver
) -> None:
    created = hook_admin.post("/app/settings/webhooks", {"url": receiver.url, "eventTypes": ["*"]})
    secret = shown_secret(created)
    [hook] = webhook_ids(hook_admin.get("/app/settings/webhooks"))
    r = hook_admin.post(f"/app/settings/webhooks/{hook}/test")
    assert r.status_code == 200
    assert "Test ping delivered: HTTP 200" in r.text and secret not in r.text
    [got] = receiver.received
    assert got.json()["type"] == "webhook.test"
    assert verify_signature(secret, got.headers["intently-signature"], got.body)

    down = f"http://127.0.0.1:{free_port()}/hook"
    hook_admin.post("/app/settings/webhooks", {"url": down, "eventTypes": ["*"]})
    other = next(h for h in webhook_ids(hook_admin.get("/app/settings/webhooks")) if h != hook)
    r = hook_admin.post(f"/app/settings/webhooks/{other}/test")
    assert r.status_code == 200 and "Test ping failed: could not connect" in r.text


def test_the_delivery_log_pages_filters_and_retries(
    hook_admin: Dashboard, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    hook_admin.post(
        "/app/settings/webhooks", {"url": receiver.url, "eventTypes": ["account.created"]}
    )
    [hook] = webhook_ids(hook_admin.get("/app/settings/webhooks"))
    base = f"/app/settings/webhooks/{hook}"
    ws_id = hook_admin.ws.id

    def counts() -> dict[str, int]:
        return dict(hook_admin.ws.api.get(f"/webhooks/{hook}").json()["data"]["deliveries"])

    ids = make_events(engine, ws_id, 27)
    drain(engine, wh_settings, ws_id, lambda: counts()["delivered"] == 27, timeout=15)
    page = hook_admin.get(base)
    assert page.status_code == 200
    assert re.findall(r"<code>([0-9a-f]{24})</code>", page.text) == list(reversed(ids))[:25]
    assert page.text.count('delivery-delivered">delivered<') == 25 and "1 attempt<" in page.text
    older = re.search(r'href="(/app/settings/webhooks/[0-9a-f]{24}\?cursor=[^"]+)"', page.text)
    assert older
    second = hook_admin.get(html.unescape(older.group(1)))
    assert re.findall(r"<code>([0-9a-f]{24})</code>", second.text) == list(reversed(ids))[25:]
    assert "?cursor=" not in second.text and "/retry" not in page.text + second.text

    # A receiver that breaks: the delivery fails all its tries, the webhook turns itself off.
    receiver.default = 500
    [broken] = make_events(engine, ws_id, 1)
    drain(engine, wh_settings, ws_id, lambda: counts()["failed"] == 1, timeout=15)
    page = hook_admin.get(f"{base}?status=failed")
    assert re.findall(r"<code>([0-9a-f]{24})</code>", page.text) == [broken]
    assert "HTTP 500" in page.text and "2 attempts" in page.text
    assert "#1 · " in page.text and "#2 · " in page.text
    assert "Disabled automatically" in page.text and ">Enable<" in page.text
    retry = re.search(rf'action="({re.escape(base)}/deliveries/[0-9a-f]{{24}}/retry)"', page.text)
    assert retry

    receiver.default = "ok"
    r = hook_admin.post(retry.group(1))
    assert r.status_code == 303 and r.headers["location"] == f"{base}?done=retried"
    assert "Delivery queued again" in hook_admin.get(r.headers["location"]).text
    pending = hook_admin.get(f"{base}?status=pending")
    assert re.findall(r"<code>([0-9a-f]{24})</code>", pending.text) == [broken]
    r = hook_admin.post(retry.group(1))
    assert r.status_code == 409
    assert "is pending; only a failed delivery can be retried" in flash_error(r)
    assert hook_admin.post(f"{base}/status", {"status": "active"}).status_code == 303
    drain(engine, wh_settings, ws_id, lambda: counts()["delivered"] == 28, timeout=15)
    assert "No pending deliveries" in hook_admin.get(f"{base}?status=pending").text
    assert "No failed deliveries" in hook_admin.get(f"{base}?status=failed").text

    r = hook_admin.get(f"{base}?status=lost")
    assert r.status_code == 400 and "got &#39;lost&#39;" in r.text
    r = hook_admin.get(f"{base}?cursor=forged")
    assert r.status_code == 400 and "Invalid cursor" in r.text
    r = hook_admin.post(f"{base}/deliveries/{UNKNOWN_ID}/retry")
    assert r.status_code == 404 and f"Delivery &#39;{UNKNOWN_ID}&#39; not found" in r.text


# ---- custom fields -------------------------------------------------------------------------


def test_custom_fields_are_created_listed_and_deactivated(admin: Dashboard) -> None:
    r = admin.post(
        "/app/settings/custom-fields",
        {
            "label": "Revenue band",
            "labelType": "singleSelection",
            "description": "From finance",
            "options": "Small\nMid, large\n\nEnterprise\n",
        },
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/app/settings/custom-fields?done=field-created"
    page = admin.get(r.headers["location"]).text
    assert "<code>REVENUE_BAND_C</code>" in page and "Custom field created." in page
    [field] = admin.ws.api.get("/accounts/custom-fields").json()["data"]
    assert field["key"] == "REVENUE_BAND_C" and field["labelType"] == "singleSelection"
    assert field["options"] == ["Small", "Mid, large", "Enterprise"]
    assert field["description"] == "From finance"

    r = admin.post("/app/settings/custom-fields", {"label": "revenue band", "labelType": "number"})
    assert r.status_code == 409
    assert flash_error(r) == "Custom field with key 'REVENUE_BAND_C' already exists"

    r = admin.post("/app/settings/custom-fields/deactivate", {"key": "REVENUE_BAND_C"})
    assert r.status_code == 303
    page = admin.get(r.headers["location"]).text
    assert "No custom fields" in page and "deactivated" in page
    assert admin.ws.api.get("/accounts/custom-fields").json()["data"] == []
    r = admin.post("/app/settings/custom-fields/deactivate", {"key": "REVENUE_BAND_C"})
    assert r.status_code == 404 and "Custom field &#39;REVENUE_BAND_C&#39; not found" in r.text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"label": "Tier", "labelType": "colour"}, "labelType should be one of"),
        ({"label": "Tier", "labelType": "colour"}, "got 'colour'"),
        ({"label": "  ", "labelType": "number"}, "label: label should not be empty"),
        (
            {"label": "Tier", "labelType": "multiSelection"},
            "options: options must contain at least 1 elements",
        ),
    ],
)
def test_a_bad_custom_field_names_the_field_and_value(
    admin: Dashboard, data: dict[str, str], message: str
) -> None:
    r = admin.post("/app/settings/custom-fields", data)
    assert r.status_code == 400, r.text
    assert message in flash_error(r)
    assert "No custom fields" in r.text


def test_a_custom_field_label_with_markup_is_escaped(admin: Dashboard) -> None:
    r = admin.post("/app/settings/custom-fields", {"label": XSS, "labelType": "singleLineText"})
    assert r.status_code == 303
    page = admin.get("/app/settings/custom-fields").text
    assert XSS not in page and ESCAPED in page


def test_a_failed_test_ping_shows_only_the_status_not_the_answer(
    hook_admin: Dashboard, receiver: Receiver
) -> None:
    receiver.default = 500  # answers "receiver says no"
    hook_admin.post("/app/settings/webhooks", {"url": receiver.url, "eventTypes": ["*"]})
    [hook] = webhook_ids(hook_admin.get("/app/settings/webhooks"))
    r = hook_admin.post(f"/app/settings/webhooks/{hook}/test")
    assert r.status_code == 200 and len(receiver.received) == 1
    assert "Test ping failed: HTTP 500 Internal Server Error" in r.text
    assert "receiver says no" not in r.text
