"""Dashboard test harness: signed-in browsers-without-a-browser (a TestClient with its own
cookie jar per user) for admins and members of fresh workspaces."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.api import Workspace
from tests.support.dashboard import Dashboard, new_dashboard


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
