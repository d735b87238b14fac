"""Webhook helpers: register a hook, record events (and so their deliveries), drive the
dispatcher, read the delivery log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from intently.events.repository import record
from intently.events.schemas import Event
from intently.kit.db import tick, write_tx
from intently.settings import Settings
from intently.webhooks.dispatcher import deliver_due
from tests.support.api import Api


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
