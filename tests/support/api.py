"""An HTTP client for one workspace's key, the workspace itself, and a maker of fresh ones."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from intently.auth.repository import workspace_id_by_name
from intently.auth.service import generate_key


class Api:
    """An HTTP client for one workspace's key under one mount (default /api/v1)."""

    def __init__(self, client: Any, key: str | None, prefix: str = "/api/v1"):
        self.client = client
        self.key = key
        self.prefix = prefix

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"X-Api-Key": self.key} if self.key is not None else {}
        headers.update(extra or {})
        return headers

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        kw["headers"] = self._headers(kw.get("headers"))
        return self.client.request(method, self.prefix + path, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def under(self, prefix: str) -> Api:
        return Api(self.client, self.key, prefix)

    def with_key(self, key: str | None) -> Api:
        return Api(self.client, key, self.prefix)


@dataclass
class Workspace:
    name: str
    email: str
    key: str
    api: Api  # /api/v1
    crm: Api  # /api/v1/crm
    id: int = 0  # workspace id, for library calls (importers, the signal store)


def new_workspace(client: Any, engine: Any, prefix: str = "ws") -> Workspace:
    """A fresh workspace with an owner and an API key, its APIs talking through `client`."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    key = generate_key(engine, name, email)
    with engine.connect() as conn:
        ws_id = workspace_id_by_name(conn, name) or 0
    return Workspace(name, email, key, Api(client, key), Api(client, key, "/api/v1/crm"), ws_id)
