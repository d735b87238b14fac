"""A dispatcher process killed mid-delivery neither loses nor corrupts the outbox: what it
held goes again once its claim runs out, with the same event ids."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from sqlalchemy import select, update

from intently.kit.timefmt import now_us
from intently.settings import Settings
from intently.webhooks.tables import webhook_attempts as wa
from intently.webhooks.tables import webhook_deliveries as wd
from tests.support.api import Workspace
from tests.support.webhook_receiver import Receiver
from tests.support.webhooks import drain, make_events, register


def test_a_killed_dispatcher_loses_nothing(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings, database_url: str
) -> None:
    receiver.default = "slow"
    receiver.slow_s = 3.0
    register(ws.api, receiver.url)
    ids = make_events(engine, ws.id, 6)
    env = dict(
        os.environ,
        INTENTLY_DATABASE_URL=database_url,
        INTENTLY_WEBHOOK_ALLOW_PRIVATE="true",
        INTENTLY_WEBHOOK_CONCURRENCY="4",
        INTENTLY_WEBHOOK_TIMEOUT_S="10",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "intently", "webhooks", "deliver", "--workspace", ws.name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while len(receiver.received) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(receiver.received) == 4, "the dispatcher did not start sending"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    with engine.connect() as conn:
        rows = conn.execute(select(wd).where(wd.c.workspace_id == ws.id)).all()
        attempts = conn.execute(select(wa).where(wa.c.workspace_id == ws.id)).all()
    # Nothing was recorded, nothing is lost: every row still pending.
    assert attempts == []
    assert sorted(r.event_id for r in rows) == sorted(ids)
    assert {r.status for r in rows} == {"pending"}
    held = [r for r in rows if r.locked_until is not None and r.locked_until > now_us()]
    # Six claimed in one batch: the four being sent are held, the two over the webhook's
    # cap (webhook_concurrency_per_webhook, 4) were given back at once.
    assert len(held) == 4

    # Time passes (the lease is timeout + 30 s): the claims run out.
    with engine.begin() as conn:
        conn.execute(update(wd).where(wd.c.workspace_id == ws.id).values(locked_until=now_us() - 1))
    receiver.default = "ok"
    before = len(receiver.received)
    drain(engine, wh_settings, ws.id, lambda: len(receiver.received) >= before + 6)
    sent = Counter(receiver.event_ids())
    assert set(sent) == set(ids)
    assert sorted(sent.values()) == [1, 1, 2, 2, 2, 2]  # the four in flight went twice
    with engine.connect() as conn:
        states = conn.execute(select(wd.c.status, wd.c.attempts).where(wd.c.workspace_id == ws.id))
        assert sorted(states) == [("delivered", 1)] * 6
