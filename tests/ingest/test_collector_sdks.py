"""Segment's and RudderStack's own Python SDKs against a running collector (`intently
serve` on a loopback port): every call type they send is stored, and an error answer is
one they parse (`code`, `message`), so they give up on a 4xx instead of retrying it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from rudderstack.analytics import Client as RudderClient
from rudderstack.analytics.request import APIError as RudderAPIError
from segment.analytics import Client as SegmentClient
from segment.analytics.request import APIError as SegmentAPIError
from sqlalchemy import text

from intently.auth.repository import workspace_id_by_name
from intently.ingest.writekeys import get_write_key
from intently.kit.db import make_engine
from tests.support.server import LiveServer

SDKS: dict[str, tuple[Callable[..., Any], type[Exception]]] = {
    "segment": (SegmentClient, SegmentAPIError),
    "rudderstack": (RudderClient, RudderAPIError),
}


def write_key(live: LiveServer) -> tuple[str, int, Any]:
    engine = make_engine(live.database_url)
    name = f"sdk-{uuid.uuid4().hex[:12]}"
    live.key(name)
    with engine.connect() as conn:
        ws = workspace_id_by_name(conn, name)
    assert ws is not None
    return get_write_key(engine, ws), ws, engine


def stored(engine: Any, ws: int, expected: int, timeout: float = 15.0) -> list[tuple[str, str]]:
    """(type, message id) of the workspace's web events, once `expected` have landed."""
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT type, message_id FROM web_events WHERE workspace_id = :ws"),
                {"ws": ws},
            ).all()
        if len(rows) >= expected or time.monotonic() > deadline:
            return [(r[0], r[1]) for r in rows]
        time.sleep(0.1)


@pytest.mark.parametrize("sdk", SDKS)
def test_every_call_an_sdk_sends_is_stored(live_server: LiveServer, sdk: str) -> None:
    key, ws, engine = write_key(live_server)
    errors: list[Exception] = []
    make, _ = SDKS[sdk]
    client = make(key, host=live_server.url, on_error=lambda e, batch: errors.append(e))
    anon, user = "anon-" + uuid.uuid4().hex[:8], "user-" + uuid.uuid4().hex[:8]
    ids = {kind: f"{sdk}-{kind}-{uuid.uuid4().hex[:8]}" for kind in
           ("page", "track", "identify", "group", "screen", "alias")}  # fmt: skip
    client.page(anonymous_id=anon, name="Pricing", properties={"path": "/pricing"},
                message_id=ids["page"])  # fmt: skip
    client.track(anonymous_id=anon, event="Form Submitted", message_id=ids["track"])
    client.identify(
        user_id=user, traits={"email": "jo@example-sdk.com"}, message_id=ids["identify"]
    )
    client.group(user_id=user, group_id="g-1", traits={"website": "example-sdk.com"},
                 message_id=ids["group"])  # fmt: skip
    client.screen(user_id=user, name="Settings", message_id=ids["screen"])
    client.alias(previous_id=anon, user_id=user, message_id=ids["alias"])
    client.flush()
    client.join()
    assert errors == []
    rows = stored(engine, ws, len(ids))
    assert sorted(rows) == sorted((kind, mid) for kind, mid in ids.items())
    engine.dispose()


@pytest.mark.parametrize("sdk", SDKS)
def test_an_sdk_reads_a_4xx_and_does_not_retry_it(live_server: LiveServer, sdk: str) -> None:
    errors: list[Exception] = []
    make, api_error = SDKS[sdk]
    client = make(
        "itlyw_not-a-key",
        host=live_server.url,
        on_error=lambda e, batch: errors.append(e),
        max_retries=5,
    )
    client.track(anonymous_id="a-1", event="Clicked")
    started = time.monotonic()
    client.flush()
    client.join()
    took = time.monotonic() - started
    (error,) = errors
    # The SDK parsed the answer: a KeyError here is what made it retry for minutes.
    assert isinstance(error, api_error), repr(error)
    assert error.status == 401 and error.code == "unauthorized"  # type: ignore[attr-defined]
    assert "write key" in error.message  # type: ignore[attr-defined]
    assert took < 5, took  # five retries with backoff would take longer
