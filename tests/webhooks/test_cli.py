"""`intently webhooks ...` as a script runs it, against a local receiver."""

from __future__ import annotations

import json
from typing import Any

from intently.webhooks.service import verify_signature
from tests.support.api import Workspace
from tests.support.cli import intently
from tests.support.webhook_receiver import Receiver
from tests.support.webhooks import deliveries, make_events, register

ENV = {
    "INTENTLY_WEBHOOK_ALLOW_PRIVATE": "true",
    "INTENTLY_WEBHOOK_TIMEOUT_S": "0.5",
    "INTENTLY_WEBHOOK_MAX_ATTEMPTS": "2",
    "INTENTLY_WEBHOOK_BACKOFF_BASE_S": "0.01",
    "INTENTLY_WEBHOOK_BACKOFF_MAX_S": "0.01",
}


def run(database_url: str, ws: Workspace, *args: str, **env: str) -> Any:
    return intently(database_url, "webhooks", *args, "--workspace", ws.name, **{**ENV, **env})


def test_the_webhook_commands(
    database_url: str, ws: Workspace, receiver: Receiver, engine: Any
) -> None:
    done = run(
        database_url, ws, "add", receiver.url, "--events", "account.created", "--description", "t"
    )
    assert done.returncode == 0, done.stderr
    hook = json.loads(done.stdout)
    wid, secret = hook["webhookId"], hook["secret"]
    assert secret.startswith("whsec_") and hook["eventTypes"] == ["account.created"]

    done = run(database_url, ws, "list")
    assert done.returncode == 0 and wid in done.stdout and receiver.url in done.stdout

    done = run(database_url, ws, "test", wid)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: HTTP 200")
    assert verify_signature(
        secret, receiver.received[0].headers["intently-signature"], receiver.received[0].body
    )

    ids = make_events(engine, ws.id, 3)
    done = run(database_url, ws, "deliver")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("3 deliveries attempted"), done.stdout
    assert sorted(receiver.event_ids()[1:]) == sorted(ids)

    done = run(database_url, ws, "deliveries", wid, "--status", "delivered")
    assert done.returncode == 0 and done.stdout.count("delivered") == 3


def test_a_failing_webhook_from_the_command_line(
    database_url: str, ws: Workspace, receiver: Receiver, engine: Any
) -> None:
    wid = register(ws.api, receiver.url)["webhookId"]
    # Tries run out, the delivery fails, the webhook is disabled.
    receiver.default = 500
    [eid] = make_events(engine, ws.id)
    done = run(database_url, ws, "deliver", INTENTLY_WEBHOOK_MAX_ATTEMPTS="1")
    assert done.returncode == 0, done.stderr
    done = run(database_url, ws, "show", wid)
    shown = json.loads(done.stdout)
    assert shown["status"] == "disabled" and "HTTP 500" in shown["disabledReason"]
    [failed] = deliveries(ws.api, wid, status="failed")
    assert failed["eventId"] == eid

    receiver.default = "ok"
    done = run(database_url, ws, "enable", wid)
    assert done.returncode == 0 and "(active)" in done.stdout
    done = run(database_url, ws, "retry", wid, failed["deliveryId"])
    assert done.returncode == 0 and "is pending" in done.stdout
    done = run(database_url, ws, "deliver")
    assert done.stdout.startswith("1 deliveries attempted"), done.stdout
    assert receiver.event_ids()[-1] == eid

    done = run(database_url, ws, "disable", wid)
    assert done.returncode == 0 and "(disabled)" in done.stdout
    done = run(database_url, ws, "remove", wid)
    assert done.returncode == 0 and "removed" in done.stdout
    assert ws.api.get(f"/webhooks/{wid}").status_code == 404


def test_bad_input_and_refused_targets_name_the_problem(database_url: str, ws: Workspace) -> None:
    done = run(database_url, ws, "add", "ftp://x.example.com", "--events", "*")
    assert done.returncode == 2
    assert "url: url must be an http or https URL; got 'ftp://x.example.com'" in done.stderr
    done = run(database_url, ws, "show", "0123456789abcdef01234567")
    assert done.returncode == 2
    assert "Webhook '0123456789abcdef01234567' not found" in done.stderr
    done = run(
        database_url,
        ws,
        "add",
        "http://127.0.0.1/in",
        "--events",
        "*",
        INTENTLY_WEBHOOK_ALLOW_PRIVATE="false",
    )
    assert done.returncode == 2 and "url refused: host '127.0.0.1' is a loopback" in done.stderr
