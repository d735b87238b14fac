"""Vendor pulls on the guarded outbound path: a base URL is checked at every connection,
so the stored credentials never go to an address the operator has not allowed."""

from __future__ import annotations

from typing import Any

import pytest

from intently.ingest import g2
from intently.ingest.connections import get_connection, set_connection
from intently.settings import Settings
from tests.support.api import Workspace
from tests.support.fake_g2 import FakeG2, Script
from tests.support.outbound import LOCAL, Rebinding

KEY = "outbound-test-credentials-key-" + "x" * 16
TOKEN = "g2-outbound-token-0x7e"


@pytest.mark.parametrize("rebound", [False, True])
def test_a_pull_to_a_base_url_on_loopback_is_refused_before_the_token_is_sent(
    engine: Any,
    workspace: Workspace,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    rebound: bool,
) -> None:
    fake = FakeG2(TOKEN).start()
    try:
        base = fake.url
        if rebound:  # a name that pointed elsewhere when it was saved
            base = fake.url.replace("127.0.0.1", "g2.rebind.test")
            Rebinding("g2.rebind.test", [["127.0.0.1"]]).install(monkeypatch)
        set_connection(
            engine, workspace.id, "g2", key=KEY, credentials={"token": TOKEN},
            config={"base_url": base, "initial_days": 1},
        )  # fmt: skip
        settings = Settings(database_url=database_url, credentials_key=KEY)
        report = g2.pull(engine, workspace.id, settings=settings, sleep=lambda _s: None)
    finally:
        fake.stop()
    assert fake.requests == []
    assert report.status == "failed"
    host = "g2.rebind.test" if rebound else "127.0.0.1"
    assert report.error is not None and report.error.startswith(
        f"the connection's base_url is refused: host '{host}' is a loopback address"
    )
    assert "INTENTLY_OUTBOUND_ALLOW" in report.error and TOKEN not in report.error
    stored = get_connection(engine, workspace.id, "g2", key=KEY)
    assert stored["last_status"] == "failed"


def test_an_answer_from_a_host_other_than_the_vendors_shows_only_its_status(
    engine: Any, workspace: Workspace, database_url: str
) -> None:
    fake = FakeG2(TOKEN).start()
    try:
        # An internal host the operator allowed, serving something other than G2's API.
        page = {"errors": [{"detail": "internal admin page: db password hunter2"}]}
        fake.script(Script(path="/api/v1/ahoy/remote-event-streams", status=400, body=page))
        set_connection(
            engine, workspace.id, "g2", key=KEY, credentials={"token": TOKEN},
            config={"base_url": fake.url, "initial_days": 1},
        )  # fmt: skip
        settings = Settings(database_url=database_url, credentials_key=KEY, outbound_allow=LOCAL)
        report = g2.pull(engine, workspace.id, settings=settings, sleep=lambda _s: None)
    finally:
        fake.stop()
    assert report.status == "failed"
    assert report.error == "G2 answered HTTP 400 at /api/v1/ahoy/remote-event-streams"
    stored = get_connection(engine, workspace.id, "g2", key=KEY)
    assert "hunter2" not in str(stored["last_error"])
