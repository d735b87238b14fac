"""Webhook test fixtures: an app and settings that allow loopback targets, a receiver,
and helpers that record events and drive the dispatcher."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from intently.app import create_app
from intently.auth.repository import workspace_id_by_name
from intently.auth.service import generate_key
from intently.events.service import Event, record
from intently.kit.db import tick, write_tx
from intently.settings import Settings
from intently.webhooks.dispatcher import deliver_due
from tests.conftest import Api, Workspace
from tests.webhooks.receiver import Receiver

FAST = {
    "webhook_allow_private": True,
    "webhook_timeout_s": 0.5,
    "webhook_max_attempts": 4,
    "webhook_backoff_base_s": 0.05,
    "webhook_backoff_max_s": 0.2,
    "webhook_concurrency": 4,
}


@pytest.fixture(scope="session")
def wh_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, **FAST)


@pytest.fixture(scope="session")
def wh_client(wh_settings: Settings) -> Iterator[TestClient]:
    app = create_app(wh_settings)
    yield TestClient(app, raise_server_exceptions=False)
    app.state.intently.engine.dispose()


@pytest.fixture
def make_hook_ws(wh_client: TestClient, engine: Any) -> Callable[[], Workspace]:
    def make() -> Workspace:
        import uuid

        name = f"wh-{uuid.uuid4().hex[:12]}"
        email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
        key = generate_key(engine, name, email)
        with engine.connect() as conn:
            ws_id = workspace_id_by_name(conn, name) or 0
        return Workspace(
            name, email, key, Api(wh_client, key), Api(wh_client, key, "/api/v1/crm"), ws_id
        )

    return make


@pytest.fixture
def ws(make_hook_ws: Callable[[], Workspace]) -> Workspace:
    """A workspace whose API (on the loopback-allowing app) can register local receivers."""
    return make_hook_ws()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def register(api: Api, url: str, types: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    r = api.post("/webhooks", json={"url": url, "eventTypes": types or ["*"], **extra})
    assert r.status_code == 201, r.text
    return dict(r.json()["data"])


def make_events(engine: Any, ws_id: int, n: int = 1, type_: str = "account.created") -> list[str]:
    """Record n events (and so their deliveries) in one transaction."""
    items = [Event(type_, None, None, {"n": i}) for i in range(n)]
    with write_tx(engine) as conn:
        return record(conn, ws_id, items, seq=tick(conn, ws_id))


def drain(
    engine: Any,
    settings: Settings,
    ws_id: int,
    until: Callable[[], bool],
    timeout: float = 10.0,
) -> None:
    """Run the dispatcher for one workspace until `until()` holds (or fail)."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        if deliver_due(engine, settings, workspace_id=ws_id) == 0:
            time.sleep(0.02)


def deliveries(api: Api, wid: str, **params: Any) -> list[dict[str, Any]]:
    r = api.get(f"/webhooks/{wid}/deliveries", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["data"])
