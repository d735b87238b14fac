"""Sign-in, sessions, sign-out, CSRF and the users CLI."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from intently.auth.users import create_user, session_user, verify_login
from tests.support.cli import intently
from tests.support.dashboard import Dashboard, sign_in

# Emails of this run: on a database kept from an earlier run, the same email would be in
# several workspaces and sign-in would ask which.
D = f"{uuid.uuid4().hex[:8]}.example.com"


def _fresh(app: Any) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def test_anonymous_pages_redirect_to_sign_in_with_the_page_to_return_to(client: TestClient) -> None:
    r = client.get("/app/accounts?stage=Aware", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/app/login?next=/app/accounts%3Fstage%3DAware"
    for path in ("/", "/app", "/app/"):
        assert client.get(path, follow_redirects=False).status_code == 303


def test_htmx_requests_without_a_session_are_told_where_to_sign_in(client: TestClient) -> None:
    r = client.get("/app/accounts", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.status_code == 401
    assert r.headers["HX-Redirect"].startswith("/app/login")


def test_sign_in_sets_an_httponly_samesite_cookie_and_returns_to_the_page(
    app: Any, engine: Any, make_workspace: Any
) -> None:
    ws = make_workspace()
    create_user(engine, ws.name, f"Ann@{D}", password="a long password", role="member")
    c = _fresh(app)
    r = sign_in(c, f"ann@{D}", "a long password")
    assert r.status_code == 303 and r.headers["location"] == "/app/accounts"
    cookie = r.headers["set-cookie"]
    assert "intently_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    page = c.get("/app/accounts")
    assert page.status_code == 200 and ws.name in page.text
    # Security headers on every page.
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("email", "password"),
    [("nobody", "a long password"), ("bob", "the wrong password")],
)
def test_a_wrong_email_or_password_signs_nobody_in(
    app: Any, engine: Any, make_workspace: Any, email: str, password: str
) -> None:
    ws = make_workspace()
    create_user(engine, ws.name, f"bob@{D}", password="a long password")
    c = _fresh(app)
    r = sign_in(c, f"{email}@{D}", password)
    assert r.status_code == 401
    assert "do not match" in r.text
    assert "intently_session" not in r.headers.get("set-cookie", "")
    assert c.get("/app/accounts", follow_redirects=False).status_code == 303


def test_the_sign_in_form_needs_its_own_token(app: Any, engine: Any, make_workspace: Any) -> None:
    ws = make_workspace()
    create_user(engine, ws.name, f"cy@{D}", password="a long password")
    c = _fresh(app)
    r = c.post(
        "/app/login",
        data={"email": f"cy@{D}", "password": "a long password", "login_token": "forged"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert c.get("/app/accounts", follow_redirects=False).status_code == 303


def test_next_never_leaves_the_dashboard(app: Any, engine: Any, make_workspace: Any) -> None:
    ws = make_workspace()
    create_user(engine, ws.name, f"dee@{D}", password="a long password")
    c = _fresh(app)
    page = c.get("/app/login?next=//evil.example.com/x")
    assert "evil" not in page.text
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token
    r = c.post(
        "/app/login",
        data={
            "email": f"dee@{D}",
            "password": "a long password",
            "login_token": token.group(1),
            "next": "https://evil.example.com/",
        },
        follow_redirects=False,
    )
    assert r.headers["location"] == "/app/"


def test_an_email_in_two_workspaces_chooses_one(app: Any, engine: Any, make_workspace: Any) -> None:
    one, two = make_workspace(), make_workspace()
    for ws in (one, two):
        create_user(engine, ws.name, f"eve@{D}", password="a long password")
    c = _fresh(app)
    r = sign_in(c, f"eve@{D}", "a long password")
    assert r.status_code == 200 and "choose one" in r.text
    assert one.name in r.text and two.name in r.text
    r = sign_in(c, f"eve@{D}", "a long password", workspace=two.name)
    assert r.status_code == 303
    assert two.name in c.get("/app/accounts").text


def test_sign_out_ends_the_session_on_the_server(admin: Dashboard, engine: Any) -> None:
    token = admin.client.cookies.get("intently_session")
    assert session_user(engine, token) is not None
    assert admin.post("/app/logout", {"csrf_token": "wrong"}).status_code == 403
    r = admin.post("/app/logout")
    assert r.status_code == 303 and r.headers["location"] == "/app/login"
    assert session_user(engine, token) is None
    # The old cookie, replayed, is refused.
    admin.client.cookies.set("intently_session", token)
    assert admin.get("/app/accounts").status_code == 303


def test_a_forged_session_cookie_is_refused(app: Any) -> None:
    c = _fresh(app)
    c.cookies.set("intently_session", "x" * 43)
    assert c.get("/app/accounts", follow_redirects=False).status_code == 303


def test_passwords_are_stored_as_argon2_hashes(engine: Any, make_workspace: Any) -> None:
    from sqlalchemy import select

    from intently.auth.tables import users

    ws = make_workspace()
    create_user(engine, ws.name, f"fay@{D}", password="a long password")
    with engine.connect() as conn:
        stored = conn.execute(
            select(users.c.password_hash).where(users.c.email == f"fay@{D}")
        ).scalar()
    assert stored.startswith("$argon2id$") and "a long password" not in stored


def test_users_create_cli_generates_a_password_that_signs_in(
    engine: Any, database_url: str
) -> None:
    name = f"ws-{uuid.uuid4().hex[:10]}"
    result = intently(
        database_url, "users", "create", "--workspace", name, "--email", f"Boss@{D}",
        "--admin",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"admin boss@{D} can sign in" in result.stdout
    password = result.stdout.strip().splitlines()[-1]
    matches = verify_login(engine, f"boss@{D}", password)
    assert [m.workspace_name for m in matches] == [name]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "not-an-email"], "email should be an email address; got 'not-an-email'"),
        (["--email", "ok@example.com", "--workspace", " "], "workspace should not be empty"),
        (
            ["--email", "<script>alert(1)</script>@x.com"],
            "email should be an email address; got '<script>alert(1)</script>@x.com'",
        ),
    ],
)
def test_users_create_cli_names_bad_input(database_url: str, args: list[str], message: str) -> None:
    base = ["users", "create", "--workspace", f"ws-{uuid.uuid4().hex[:10]}"]
    result = intently(database_url, *base, *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_short_password_is_refused(engine: Any, make_workspace: Any) -> None:
    from intently.kit.errors import BadRequest

    ws = make_workspace()
    with pytest.raises(BadRequest, match="at least 10 characters"):
        create_user(engine, ws.name, f"gil@{D}", password="short")


def test_a_password_reset_ends_the_users_sessions(admin: Dashboard, engine: Any) -> None:
    assert admin.get("/app/accounts").status_code == 200
    create_user(engine, admin.ws.name, admin.email, password="a brand new password", role="admin")
    assert admin.get("/app/accounts").status_code == 303


def test_repeated_failed_sign_ins_are_slowed(
    app: Any, engine: Any, make_workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from intently.web import throttle as module

    monkeypatch.setattr(module, "throttle", module.LoginThrottle(per_email=3, per_address=100))
    monkeypatch.setattr("intently.web.views.signin.throttle", module.throttle)
    ws = make_workspace()
    create_user(engine, ws.name, f"hal@{D}", password="a long password")
    c = _fresh(app)
    for _ in range(3):
        assert sign_in(c, f"hal@{D}", "a wrong guess").status_code == 401
    # Locked: even the right password waits, and says for how long.
    r = sign_in(c, f"HAL@{D}", "a long password")
    assert r.status_code == 429 and "Too many failed sign-ins" in r.text
    assert 0 < int(r.headers["Retry-After"]) <= 900
    # Another email from the same address is not locked by these.
    create_user(engine, ws.name, f"ian@{D}", password="a long password")
    assert sign_in(c, f"ian@{D}", "a long password").status_code == 303


def test_the_throttle_forgets_after_its_window() -> None:
    from intently.web.throttle import LoginThrottle

    t = LoginThrottle(window_s=0.2, per_email=2, per_address=100)
    t.failed("a@x.io", "1.2.3.4")
    assert t.retry_after("a@x.io", "1.2.3.4") == 0
    t.failed("A@x.io", "1.2.3.4")
    assert t.retry_after("a@x.io", "1.2.3.4") > 0
    import time

    time.sleep(0.25)
    assert t.retry_after("a@x.io", "1.2.3.4") == 0
    t.failed("b@x.io", "5.6.7.8")
    t.succeeded("b@x.io", "5.6.7.8")
    t.failed("b@x.io", "5.6.7.8")
    assert t.retry_after("b@x.io", "5.6.7.8") == 0  # a success clears the email's count


def test_failures_from_one_address_do_not_lock_the_user_out_of_another(
    app: Any, engine: Any, make_workspace: Any
) -> None:
    """Ten wrong passwords from an attacker's address lock that address out of the account;
    the user, from an address that has not failed, still signs in."""
    ws = make_workspace()
    create_user(engine, ws.name, f"joy@{D}", password="a long password")
    attacker = TestClient(app, raise_server_exceptions=False, client=("203.0.113.9", 4000))
    user = TestClient(app, raise_server_exceptions=False, client=("198.51.100.7", 4000))
    for _ in range(10):
        assert sign_in(attacker, f"joy@{D}", "a wrong guess").status_code == 401
    assert sign_in(attacker, f"joy@{D}", "a long password").status_code == 429
    assert sign_in(user, f"joy@{D}", "a long password").status_code == 303


def test_an_address_guessing_many_accounts_is_slowed() -> None:
    from intently.web.throttle import LoginThrottle

    t = LoginThrottle(per_email=10, per_address=5)
    for n in range(5):
        t.failed(f"u{n}@x.io", "1.2.3.4")
    assert t.retry_after("fresh@x.io", "1.2.3.4") > 0  # spraying: the address waits
    assert t.retry_after("fresh@x.io", "5.6.7.8") == 0


def test_an_account_under_attack_from_many_addresses_locks_the_guessers_only() -> None:
    from intently.web.throttle import LoginThrottle

    t = LoginThrottle(per_email=3, per_address=100)
    for n in range(3):
        t.failed("a@x.io", f"10.0.0.{n}")
    # Each guessing address has failed for this account: the account's lock holds them.
    assert all(t.retry_after("a@x.io", f"10.0.0.{n}") > 0 for n in range(3))
    assert t.retry_after("a@x.io", "10.0.0.99") == 0  # a clean address is not held
    t.failed("a@x.io", "10.0.0.99")
    assert t.retry_after("a@x.io", "10.0.0.99") > 0  # until it fails too
