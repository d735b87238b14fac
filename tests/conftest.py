"""Test harness: one migrated database per run (SQLite by default, PostgreSQL when
INTENTLY_TEST_DATABASE_URL says so); every test gets workspaces of its own, so tests
never see each other's data and may run in parallel on the same database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from intently.app import create_app
from intently.auth.repository import workspace_id_by_name
from intently.auth.service import generate_key
from intently.kit.db import make_engine
from intently.kit.migrate import migrate
from intently.settings import Settings

DB_ENV = "INTENTLY_TEST_DATABASE_URL"


def pytest_configure(config: pytest.Config) -> None:
    # The suite's `serve` processes share its SQLite file with each other (one per xdist
    # worker, the browser tests' own) and with the tests' in-process app; `intently serve`
    # refuses that unless told it is a test harness. tests/ops checks the refusal.
    os.environ.setdefault("INTENTLY_SQLITE_SHARED_SERVE", "1")
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller already migrated
    if not os.environ.get(DB_ENV):
        path = os.path.join(tempfile.mkdtemp(prefix="intently-test-"), "test.sqlite3")
        os.environ[DB_ENV] = f"sqlite:///{path}"
    migrate(os.environ[DB_ENV])


@pytest.fixture(scope="session")
def database_url() -> str:
    return os.environ[DB_ENV]


@pytest.fixture(scope="session")
def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgres")


@pytest.fixture(scope="session")
def app(database_url: str) -> Any:
    # Every test client comes from one address, so the per-address limit on requests
    # without a valid key would cut the suite's many 401 checks short: tests/api/
    # test_rate_limits.py tests it on an app of its own.
    return create_app(Settings(database_url=database_url, rate_limit_anonymous_per_minute=0))


@pytest.fixture(scope="session")
def engine(app: Any) -> Any:
    return app.state.intently.engine


@pytest.fixture(scope="session")
def client(app: Any) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


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


@pytest.fixture
def make_workspace(client: TestClient, engine: Any) -> Callable[[], Workspace]:
    """A factory of fresh workspaces, each with a user and an API key."""

    def make() -> Workspace:
        name = f"ws-{uuid.uuid4().hex[:12]}"
        email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
        key = generate_key(engine, name, email)
        with engine.connect() as conn:
            ws_id = workspace_id_by_name(conn, name)
        return Workspace(
            name, email, key, Api(client, key), Api(client, key, "/api/v1/crm"), ws_id or 0
        )

    return make


@pytest.fixture
def workspace(make_workspace: Callable[[], Workspace]) -> Workspace:
    return make_workspace()


@pytest.fixture
def api(workspace: Workspace) -> Api:
    return workspace.api


@pytest.fixture
def other(make_workspace: Callable[[], Workspace]) -> Workspace:
    """A second workspace, for tenancy checks."""
    return make_workspace()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(**env: str) -> Iterator[str]:
    """`intently serve` in a subprocess on a free loopback port, with these INTENTLY_*
    settings; yields its base URL once /healthz answers, stops it afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "intently", "serve", "--port", str(port)],
        env=dict(os.environ, **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"server did not start: {err[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class LiveServer:
    url: str
    database_url: str

    def key(self, workspace: str | None = None) -> str:
        engine = make_engine(self.database_url)
        try:
            return generate_key(
                engine, workspace or f"live-{uuid.uuid4().hex[:12]}", "live@example.com"
            )
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def live_server(database_url: str) -> Iterator[LiveServer]:
    """`intently serve` in a subprocess on a free loopback port, on the test database."""
    # Webhook tests drive the dispatcher themselves, with settings of their own: this
    # shared server must not deliver their webhooks. Its tests hammer it with one key
    # (concurrency, delta sync); rate limits have tests of their own.
    with serving(
        INTENTLY_DATABASE_URL=database_url,
        INTENTLY_WEBHOOK_DISPATCH="false",
        INTENTLY_RATE_LIMIT_PER_MINUTE="0",
    ) as url:
        yield LiveServer(url, database_url)
