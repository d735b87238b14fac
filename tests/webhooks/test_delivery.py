"""Deliveries against a real local receiver: signing, the outbox, retries, failures,
disabling, the SSRF guard, redirects, leases and concurrent dispatchers."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from typing import Any

import pytest

from intently.kit.db import write_tx
from intently.kit.timefmt import now_us
from intently.settings import Settings
from intently.webhooks import repository as repo
from intently.webhooks.dispatcher import deliver_due, record
from intently.webhooks.service import make_client, send, verify_signature
from intently.webhooks.tables import webhook_deliveries
from tests.support.api import Workspace
from tests.support.server import free_port
from tests.support.webhook_receiver import Receiver
from tests.support.webhooks import deliveries, drain, make_events, register


def test_an_event_arrives_signed_with_its_id(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    hook = register(ws.api, receiver.url, ["account.created"])
    r = ws.api.post(
        "/accounts", json={"accounts": [{"domain": "signed.example.com", "name": "Signed"}]}
    )
    assert r.status_code == 200, r.text
    drain(engine, wh_settings, ws.id, lambda: len(receiver.received) >= 1)

    got = receiver.received[0]
    body = got.json()
    assert body["type"] == "account.created"
    assert got.headers["intently-event-id"] == body["eventId"]
    assert got.headers["intently-webhook-id"] == hook["webhookId"]
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("Intently-Webhooks/")
    sig = got.headers["intently-signature"]
    assert verify_signature(hook["secret"], sig, got.body)
    assert not verify_signature(hook["secret"] + "x", sig, got.body)
    assert not verify_signature(hook["secret"], sig, got.body.replace(b"account", b"accounx"))
    assert not verify_signature(hook["secret"], sig, got.body, now=time.time() + 600)
    # The body is the event exactly as the events API shows it.
    event = ws.api.get(f"/events/{body['eventId']}").json()["data"]
    assert body == event

    [d] = deliveries(ws.api, hook["webhookId"])
    assert got.headers["intently-delivery-id"] == d["deliveryId"]
    assert d["status"] == "delivered" and d["eventId"] == body["eventId"]
    assert d["eventType"] == "account.created"
    assert [(a["attempt"], a["statusCode"], a["success"]) for a in d["attempts"]] == [
        (1, 200, True)
    ]


def test_only_subscribed_types_are_queued(ws: Workspace, engine: Any) -> None:
    hook = register(ws.api, "http://127.0.0.1:9/hook", ["stage.changed"])
    make_events(engine, ws.id, 3, "account.created")
    make_events(engine, ws.id, 2, "stage.changed")
    got = deliveries(ws.api, hook["webhookId"])
    assert [d["eventType"] for d in got] == ["stage.changed"] * 2


def test_a_rolled_back_change_enqueues_nothing(ws: Workspace, engine: Any) -> None:
    from intently.events.repository import record
    from intently.events.schemas import Event
    from intently.kit.db import tick

    hook = register(ws.api, "http://127.0.0.1:9/hook")
    with pytest.raises(RuntimeError), write_tx(engine) as conn:
        record(conn, ws.id, [Event("account.created", None, None, None)], seq=tick(conn, ws.id))
        raise RuntimeError("the change fails after recording its event")
    assert deliveries(ws.api, hook["webhookId"]) == []
    make_events(engine, ws.id, 1)
    assert len(deliveries(ws.api, hook["webhookId"])) == 1


def test_a_receiver_that_is_down_loses_nothing(
    ws: Workspace, engine: Any, wh_settings: Settings
) -> None:
    port = free_port()  # nothing listens here yet
    hook = register(ws.api, f"http://127.0.0.1:{port}/hook")
    ids = make_events(engine, ws.id, 3)
    patient = wh_settings.model_copy(
        update={"webhook_backoff_base_s": 0.8, "webhook_backoff_max_s": 0.8}
    )
    assert deliver_due(engine, patient, workspace_id=ws.id) == 3
    pending = deliveries(ws.api, hook["webhookId"], status="pending")
    assert len(pending) == 3
    for d in pending:
        assert d["attemptCount"] == 1
        assert "could not connect" in d["lastError"]
        assert d["attempts"][0]["statusCode"] is None
    # Backing off: not due again at once.
    assert deliver_due(engine, wh_settings, workspace_id=ws.id) == 0

    late = Receiver(port=port).start()
    try:
        drain(engine, wh_settings, ws.id, lambda: len(late.received) >= 3)
        assert sorted(late.event_ids()) == sorted(ids)
    finally:
        late.stop()
    done = deliveries(ws.api, hook["webhookId"], status="delivered")
    assert len(done) == 3 and all(d["attemptCount"] >= 2 for d in done)


def test_a_slow_receiver_times_out_and_is_retried(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    receiver.script.append("slow")
    receiver.slow_s = 3.0
    hook = register(ws.api, receiver.url)
    [eid] = make_events(engine, ws.id)
    t0 = time.monotonic()
    assert deliver_due(engine, wh_settings, workspace_id=ws.id) == 1
    assert time.monotonic() - t0 < receiver.slow_s  # the timeout, not the receiver, ended it
    [d] = deliveries(ws.api, hook["webhookId"])
    assert d["status"] == "pending" and "no complete answer within 1 s" in d["lastError"]
    drain(engine, wh_settings, ws.id, lambda: len(receiver.received) >= 2)
    drain(
        engine,
        wh_settings,
        ws.id,
        lambda: deliveries(ws.api, hook["webhookId"])[0]["status"] == "delivered",
    )
    assert set(receiver.event_ids()) == {eid}


@pytest.mark.parametrize("failure", [500, "close"])
def test_failures_are_retried_until_delivered(
    failure: Any, ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    receiver.script.extend([failure, failure])
    hook = register(ws.api, receiver.url)
    [eid] = make_events(engine, ws.id)
    drain(engine, wh_settings, ws.id, lambda: len(receiver.received) >= 3)
    [d] = deliveries(ws.api, hook["webhookId"])
    assert d["status"] == "delivered" and d["attemptCount"] == 3
    codes = [a["statusCode"] for a in d["attempts"]]
    assert codes == ([500, 500, 200] if failure == 500 else [None, None, 200])
    if failure == 500:
        assert d["attempts"][0]["error"] == "HTTP 500 Internal Server Error"
    assert receiver.event_ids() == [eid] * 3
    got = ws.api.get(f"/webhooks/{hook['webhookId']}").json()["data"]
    assert got["consecutiveFailures"] == 0 and got["lastSuccessAt"] is not None


def test_backoff_grows_between_tries(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    receiver.default = 500
    settings = wh_settings.model_copy(
        update={"webhook_backoff_base_s": 0.2, "webhook_backoff_max_s": 10.0}
    )
    hook = register(ws.api, receiver.url)
    make_events(engine, ws.id)
    drain(engine, settings, ws.id, lambda: len(receiver.received) >= 3, timeout=10)
    [d] = deliveries(ws.api, hook["webhookId"])
    at = [a["at"] for a in d["attempts"]][:3]
    from intently.kit.timefmt import parse_iso8601

    gaps = [(parse_iso8601(b) - parse_iso8601(a)) / 1e6 for a, b in itertools.pairwise(at)]
    # base 0.2 s then 0.4 s, less up to a quarter of jitter
    assert 0.15 <= gaps[0] < 0.4 and 0.3 <= gaps[1] < 0.8, gaps


def test_a_webhook_that_keeps_failing_is_disabled_and_says_why(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    receiver.default = 500
    hook = register(ws.api, receiver.url)
    wid = hook["webhookId"]
    [eid] = make_events(engine, ws.id)
    drain(
        engine,
        wh_settings,
        ws.id,
        lambda: ws.api.get(f"/webhooks/{wid}").json()["data"]["status"] == "disabled",
    )
    got = ws.api.get(f"/webhooks/{wid}").json()["data"]
    [d] = deliveries(ws.api, wid)
    assert d["status"] == "failed" and d["attemptCount"] == wh_settings.webhook_max_attempts
    assert got["disabledAt"] is not None
    reason = got["disabledReason"]
    assert d["deliveryId"] in reason and eid in reason and "HTTP 500" in reason
    assert f"failed all {wh_settings.webhook_max_attempts} tries" in reason
    assert got["consecutiveFailures"] == wh_settings.webhook_max_attempts
    assert got["deliveries"] == {"pending": 0, "delivered": 0, "failed": 1}
    assert len(receiver.received) == wh_settings.webhook_max_attempts

    # Disabled by failing: what happens meanwhile is queued, not lost, and not sent.
    [later] = make_events(engine, ws.id)
    assert deliver_due(engine, wh_settings, workspace_id=ws.id) == 0
    assert len(receiver.received) == wh_settings.webhook_max_attempts

    # The owner fixes the receiver, re-enables, and retries the failed delivery.
    receiver.default = "ok"
    r = ws.api.patch(f"/webhooks/{wid}", json={"status": "active"})
    assert r.status_code == 200, r.text
    again = r.json()["data"]
    assert again["status"] == "active" and again["disabledReason"] is None
    assert again["consecutiveFailures"] == 0
    r = ws.api.post(f"/webhooks/{wid}/deliveries/{d['deliveryId']}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["data"]["status"] == "pending" and r.json()["data"]["attemptCount"] == 0
    drain(engine, wh_settings, ws.id, lambda: len(receiver.received) > 5)
    by_event = {x["eventId"]: x for x in deliveries(ws.api, wid)}
    assert by_event[eid]["status"] == "delivered" and len(by_event[eid]["attempts"]) == 5
    assert by_event[later]["status"] == "delivered"
    assert set(receiver.event_ids()[-2:]) == {eid, later}


def test_a_disabled_webhook_keeps_its_pending_deliveries(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    hook = register(ws.api, receiver.url)
    wid = hook["webhookId"]
    ids = make_events(engine, ws.id, 2)
    r = ws.api.patch(f"/webhooks/{wid}", json={"status": "disabled"})
    assert r.json()["data"]["disabledReason"] == "Disabled by a user"
    assert deliver_due(engine, wh_settings, workspace_id=ws.id) == 0
    assert len(deliveries(ws.api, wid, status="pending")) == 2
    make_events(engine, ws.id)  # turned off by its owner: nothing new is queued
    assert len(deliveries(ws.api, wid)) == 2
    ws.api.patch(f"/webhooks/{wid}", json={"status": "active"})
    drain(engine, wh_settings, ws.id, lambda: len(receiver.received) >= 2)
    assert sorted(receiver.event_ids()) == sorted(ids)


def test_private_targets_are_refused_when_sending(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    hook = register(ws.api, receiver.url)  # allowed when registered (this app allows it)
    make_events(engine, ws.id)
    strict = wh_settings.model_copy(update={"webhook_allow_private": False})
    assert deliver_due(engine, strict, workspace_id=ws.id) == 1
    [d] = deliveries(ws.api, hook["webhookId"])
    assert d["status"] == "pending"
    assert d["lastError"].startswith("target refused: host '127.0.0.1' is a loopback address")
    assert receiver.received == []


def test_redirects_are_not_followed(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    receiver.default = "redirect"
    hook = register(ws.api, receiver.url)
    make_events(engine, ws.id)
    assert deliver_due(engine, wh_settings, workspace_id=ws.id) == 1
    [d] = deliveries(ws.api, hook["webhookId"])
    assert d["lastStatusCode"] == 302 and d["status"] == "pending"
    # Where it pointed is not shown: it could name a host of the operator's network.
    assert d["lastError"] == "HTTP 302 Found (redirect not followed)"
    assert [r.path for r in receiver.received] == ["/hook"]


def test_an_abandoned_claim_runs_out_and_the_event_goes_again(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    """A dispatcher that sent a delivery and died before recording it."""
    hook = register(ws.api, receiver.url)
    [eid] = make_events(engine, ws.id)
    now = now_us()
    with write_tx(engine) as conn:
        [claimed] = repo.claim(conn, now, now + 400_000, 10, ws.id)
    with make_client(wh_settings) as client:
        first = send(
            client,
            wh_settings,
            url=receiver.url,
            secret=hook["secret"],
            body=b"{}",
            event_id=claimed.event_id,
            webhook_id=claimed.webhook_id,
            delivery_id=claimed.id,
        )
    assert first.ok  # ... and the process dies here: no result recorded
    assert deliver_due(engine, wh_settings, workspace_id=ws.id) == 0  # the lease holds
    time.sleep(0.45)
    assert deliver_due(engine, wh_settings, workspace_id=ws.id) == 1
    assert receiver.event_ids() == [eid, eid]
    [d] = deliveries(ws.api, hook["webhookId"])
    assert d["status"] == "delivered" and d["attemptCount"] == 1
    # The dead dispatcher's late result, had it come, no longer applies.
    from concurrent.futures import Future

    from intently.webhooks.dispatcher import Outcome
    from intently.webhooks.service import AttemptResult

    late = Outcome(claimed, AttemptResult(False, 500, "late", 1), False, Future())
    record(engine, wh_settings, [late])
    [d] = deliveries(ws.api, hook["webhookId"])
    assert d["status"] == "delivered"


def test_two_dispatchers_deliver_each_event_once(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    hook = register(ws.api, receiver.url)
    ids = make_events(engine, ws.id, 60)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            while deliver_due(engine, wh_settings, workspace_id=ws.id, limit=5):
                pass
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Counter(receiver.event_ids()) == Counter(ids)
    assert len(deliveries(ws.api, hook["webhookId"], status="delivered")) == 60


def test_the_dispatcher_thread_delivers_and_stops(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    from intently.webhooks.dispatcher import Dispatcher

    register(ws.api, receiver.url)
    ids = make_events(engine, ws.id, 20)
    d = Dispatcher(engine, wh_settings, workspace_id=ws.id).start()
    try:
        deadline = time.monotonic() + 10
        while len(receiver.received) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        d.stop(timeout=10)
    assert sorted(receiver.event_ids()) == sorted(ids)
    with engine.connect() as conn:
        rows = conn.execute(
            webhook_deliveries.select().where(webhook_deliveries.c.workspace_id == ws.id)
        ).all()
    assert {r.status for r in rows} == {"delivered"}
