"""Webhooks on the guarded outbound path: a target rebound inward after it was checked is
never reached, a failed answer shows only its status, a request ends by its deadline,
and a receiver that does not answer holds only its share of the send slots."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from intently.app import create_app
from intently.settings import Settings
from intently.webhooks.dispatcher import Dispatcher, deliver_due
from tests.support.api import Workspace, new_workspace
from tests.support.outbound import Rebinding, Trickle, wait_until
from tests.support.webhook_receiver import Receiver
from tests.support.webhooks import deliveries, make_events, register

NAME = "hooks.rebind.test"
# A global address that the checks accept and that nothing here answers on.
PUBLIC = "2001:4860:4860::8888"


@pytest.fixture(scope="module")
def strict_settings(database_url: str) -> Settings:
    """The operator's defaults: no private target allowed."""
    return Settings(database_url=database_url, webhook_timeout_s=0.5, webhook_max_attempts=2)


@pytest.fixture(scope="module")
def strict_client(strict_settings: Settings) -> Iterator[TestClient]:
    app = create_app(strict_settings)
    yield TestClient(app, raise_server_exceptions=False)
    app.state.intently.engine.dispose()


def test_a_target_rebound_to_loopback_after_its_check_is_never_reached(
    monkeypatch: pytest.MonkeyPatch,
    strict_client: TestClient,
    strict_settings: Settings,
    engine: Any,
) -> None:
    ws = new_workspace(strict_client, engine, "wh-strict")
    internal = Receiver(default=500).start()  # an internal service on loopback
    try:
        # The name answers a public address twice (the checks), then loopback.
        dns = Rebinding(NAME, [[PUBLIC], [PUBLIC], ["127.0.0.1"]]).install(monkeypatch)
        hook = register(ws.api, f"http://{NAME}:{internal.port}/hook", ["account.created"])
        wid = hook["webhookId"]
        first = ws.api.post(f"/webhooks/{wid}/test")
        second = ws.api.post(f"/webhooks/{wid}/test")
        make_events(engine, ws.id, 1)
        assert deliver_due(engine, strict_settings, workspace_id=ws.id) == 1

        assert internal.received == []
        assert first.json()["data"]["success"] is False
        refused = f"target refused: host '{NAME}' is a loopback address (127.0.0.1)"
        assert second.json()["data"]["error"].startswith(refused)
        [d] = deliveries(ws.api, wid)
        assert d["lastError"].startswith(refused)
        assert "receiver says no" not in first.text + second.text
        # One lookup at creation, then exactly one for each connection.
        assert len(dns.lookups) == 4
    finally:
        internal.stop()


def test_a_failed_answer_shows_only_its_status(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    receiver.default = 500  # its body says "receiver says no"
    hook = register(ws.api, receiver.url, ["account.created"])
    r = ws.api.post(f"/webhooks/{hook['webhookId']}/test")
    result = r.json()["data"]
    assert (result["success"], result["statusCode"]) == (False, 500)
    assert result["error"] == "HTTP 500 Internal Server Error"
    make_events(engine, ws.id, 1)
    deliver_due(engine, wh_settings, workspace_id=ws.id)
    shown = ws.api.get(f"/webhooks/{hook['webhookId']}/deliveries")
    [d] = shown.json()["data"]["data"]
    assert d["lastError"] == "HTTP 500 Internal Server Error"
    assert "receiver says no" not in r.text + shown.text


def test_the_test_ping_ends_by_the_deadline_though_the_receiver_keeps_sending(
    ws: Workspace, wh_settings: Settings
) -> None:
    slow = Trickle(for_s=4.0, every_s=0.05)  # each read gets a byte well within the timeout
    try:
        hook = register(ws.api, slow.url)
        result = ws.api.post(f"/webhooks/{hook['webhookId']}/test").json()["data"]
    finally:
        slow.stop()
    assert result["success"] is False
    assert result["error"].startswith(
        f"no complete answer within {wh_settings.webhook_timeout_s:g} s"
    )
    assert result["durationMs"] < 3000


def test_a_receiver_that_never_finishes_holds_only_its_share_of_the_send_slots(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    settings = wh_settings.model_copy(
        update={
            "webhook_concurrency": 4,
            "webhook_concurrency_per_webhook": 2,
            "webhook_timeout_s": 3.0,
        }
    )
    hole = Trickle(for_s=8.0, every_s=0.05)
    try:
        slow = register(ws.api, hole.url, ["segment.entered"])
        fine = register(ws.api, receiver.url, ["account.created"])
        make_events(engine, ws.id, 6, "segment.entered")  # due first, they are claimed first
        make_events(engine, ws.id, 1, "account.created")
        dispatcher = Dispatcher(engine, settings, workspace_id=ws.id).start()
        try:
            delivered = wait_until(lambda: len(receiver.received) == 1, 2.5)
            # Sent while the slow receiver's first sends are still in flight.
            waiting = deliveries(ws.api, slow["webhookId"])
        finally:
            dispatcher.stop()
        assert delivered, "the other webhook's delivery waited for the slow receiver"
        assert all(d["attempts"] == [] for d in waiting)
        assert hole.requests <= 2
        [d] = deliveries(ws.api, fine["webhookId"])
        assert d["status"] == "delivered"
        tried = [a for d in deliveries(ws.api, slow["webhookId"]) for a in d["attempts"]]
        assert tried and all(a["error"].startswith("no complete answer within 3 s") for a in tried)
    finally:
        hole.stop()
