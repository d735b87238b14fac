"""A signed-in dashboard user: a TestClient with its own cookie jar, and its CSRF token."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.testclient import TestClient

from intently.auth.users import create_user
from tests.support.api import Workspace

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


def upload(
    board: Dashboard, path: str, name: str, content: bytes, htmx: bool = True, **data: str
) -> Any:
    """A file posted to a dashboard form: as htmx sends it, or as a plain form post."""
    files = {"file": (name, content, "text/csv")}
    if htmx:
        return board.htmx("POST", path, data=data, files=files)
    return board.post(path, data, files=files)


def run_id_of(html: str) -> str:
    """The id of the ingest run a page links to."""
    found = re.search(r"/app/sources/runs/([0-9a-f]{24})", html)
    assert found, html
    return found.group(1)
