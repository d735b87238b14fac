"""Dashboard test harness: signed-in browsers-without-a-browser (a TestClient with its own
cookie jar per user) for admins and members of fresh workspaces."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from intently.auth.repository import workspace_id_by_name
from intently.auth.service import generate_key
from intently.auth.users import create_user
from tests.conftest import Api, Workspace

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_LOGIN = re.compile(r'name="login_token" value="([^"]+)"')


@dataclass
class Dashboard:
    """One signed-in user's session against the app."""

    client: TestClient
    ws: Workspace
    email: str
    password: str
    role: str
    csrf: str = ""

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, follow_redirects=False, **kw)

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        """A form post with the session's CSRF token added."""
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf)
        return self.client.post(path, data=data, follow_redirects=False, **kw)

    def htmx(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """An htmx request: the CSRF token travels in a header, as base.html sets it."""
        headers = {"HX-Request": "true", "X-CSRF-Token": self.csrf, **kw.pop("headers", {})}
        return self.client.request(method, path, headers=headers, follow_redirects=False, **kw)


def sign_in(client: TestClient, email: str, password: str, workspace: str = "") -> httpx.Response:
    page = client.get("/app/login")
    token = _LOGIN.search(page.text)
    assert token, page.text
    return client.post(
        "/app/login",
        data={
            "email": email,
            "password": password,
            "workspace": workspace,
            "login_token": token.group(1),
            "next": "/app/accounts",
        },
        follow_redirects=False,
    )


def new_dashboard(app: Any, engine: Any, ws: Workspace, role: str) -> Dashboard:
    """A new user of `ws` with this role, signed in through the sign-in form."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery " + uuid.uuid4().hex[:6]
    create_user(engine, ws.name, email, password=password, role=role)
    client = TestClient(app, raise_server_exceptions=False, base_url="http://testserver")
    response = sign_in(client, email, password)
    assert response.status_code == 303, response.text
    board = Dashboard(client, ws, email, password, role)
    page = client.get("/app/accounts")
    found = _CSRF.search(page.text)
    assert found, page.text[:500]
    board.csrf = found.group(1)
    return board


def new_workspace(client: Any, engine: Any) -> Workspace:
    """A fresh workspace with an API key (as tests/conftest.py's make_workspace)."""
    name = f"ws-{uuid.uuid4().hex[:12]}"
    key = generate_key(engine, name, f"owner-{uuid.uuid4().hex[:8]}@example.com")
    with engine.connect() as conn:
        ws_id = workspace_id_by_name(conn, name) or 0
    return Workspace(name, "", key, Api(client, key), Api(client, key, "/api/v1/crm"), ws_id)


@pytest.fixture
def make_dashboard(
    app: Any, engine: Any, make_workspace: Callable[[], Workspace]
) -> Callable[..., Dashboard]:
    """make_dashboard(role="admin", ws=None): a user of `ws` (a fresh workspace when None),
    signed in through the sign-in form."""

    def make(role: str = "admin", ws: Workspace | None = None) -> Dashboard:
        return new_dashboard(app, engine, ws or make_workspace(), role)

    return make


@pytest.fixture
def admin(make_dashboard: Callable[..., Dashboard]) -> Dashboard:
    return make_dashboard("admin")


@pytest.fixture
def member(make_dashboard: Callable[..., Dashboard], admin: Dashboard) -> Dashboard:
    """A member of the admin fixture's workspace."""
    return make_dashboard("member", admin.ws)
