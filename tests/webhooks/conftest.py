"""Webhook test fixtures: an app and settings that allow loopback targets, and workspaces
whose API runs on that app (tests/support/webhooks.py has the helpers, tests/conftest.py
the receiver)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from intently.app import create_app
from intently.settings import Settings
from tests.support.api import Workspace, new_workspace

FAST = {
    "webhook_allow_private": True,
    # The whole request, connect to last byte: room for a loaded test machine.
    "webhook_timeout_s": 1.0,
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
    return lambda: new_workspace(wh_client, engine, "wh")


@pytest.fixture
def ws(make_hook_ws: Callable[[], Workspace]) -> Workspace:
    """A workspace whose API (on the loopback-allowing app) can register local receivers."""
    return make_hook_ws()
