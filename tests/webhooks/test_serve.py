"""`intently serve` runs the dispatcher: a pushed account reaches a receiver with no other
process involved (on a database of its own, so no other test's webhooks are touched)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from intently.auth.service import generate_key
from intently.kit.db import make_engine
from intently.kit.migrate import migrate
from intently.webhooks.service import verify_signature
from tests.support.server import serving
from tests.support.webhook_receiver import Receiver


def test_serve_delivers_webhooks(tmp_path: Path, receiver: Receiver) -> None:
    url = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
    migrate(url)
    engine = make_engine(url)
    key = generate_key(engine, "serve-ws", "serve@example.com")
    engine.dispose()
    with serving(
        INTENTLY_DATABASE_URL=url,
        INTENTLY_WEBHOOK_DISPATCH="true",
        INTENTLY_WEBHOOK_ALLOW_PRIVATE="true",
    ) as server:
        base = f"{server}/api/v1"
        h = {"X-Api-Key": key}
        r = httpx.post(
            f"{base}/webhooks",
            json={"url": receiver.url, "eventTypes": ["account.created"]},
            headers=h,
        )
        assert r.status_code == 201, r.text
        secret = r.json()["data"]["secret"]
        r = httpx.post(
            f"{base}/accounts",
            json={"accounts": [{"domain": "served.example.com", "name": "Served"}]},
            headers=h,
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 15
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
        [got] = receiver.received
        assert got.json()["type"] == "account.created"
        assert verify_signature(secret, got.headers["intently-signature"], got.body)
