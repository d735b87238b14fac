"""PostgreSQL restarted under load (issue 8): while it is down, requests answer 503 in the
envelope (never 500, never a hang); once it is back they succeed again without restarting
the API process, and everything acknowledged before is still there.

The server restarted is one of the test's own (initdb into a temporary directory as the
`postgres` OS user), so the server the rest of the suite uses is not disturbed.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.scale.conftest import Cluster, Http, Record, envelope_data, wait_until
from tests.support.server import free_port

PG_ROOT = Path("/usr/lib/postgresql")
UP_BEFORE_S = 3.0  # load on a healthy server before the restart
DOWN_S = 3.0  # how long the server stays down
RECOVER_S = 10.0  # the most the first requests after the restart may still fail
SETTLED_S = 3.0  # load after the first success; every request then must succeed
REQUEST_BOUND_S = 10.0  # no request may take longer than this, down or up
LOAD_EVERY_S = 0.1


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory."""
    versions = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


class PrivateServer:
    """A PostgreSQL server of the test's own: trust auth, loopback, a free port."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.port = free_port()
        # Not under pytest's tmp_path: the `postgres` user must reach it, and root's
        # pytest directories are private.
        self.dir = Path(tempfile.mkdtemp(prefix="intently-pg-"))
        self.data = self.dir / "data"
        shutil.chown(self.dir, "postgres", "postgres")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.dir,
        )
        assert done.returncode == 0, f"{' '.join(args)} failed: {done.stdout}{done.stderr}"
        return done

    def init(self) -> None:
        self.run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self.run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_server(pg_server_url: str) -> Iterator[PrivateServer]:
    bin_dir = pg_bin()
    if bin_dir is None:
        pytest.skip(f"no PostgreSQL server binaries under {PG_ROOT} to start a private server")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip(
            "starting a private PostgreSQL server needs root and runuser (initdb as postgres)"
        )
    server = PrivateServer(bin_dir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


def errors_of(log: str, most: int = 3) -> str:
    """The first error records of a process's log (JSON lines or plain tracebacks)."""
    lines = [
        line[:4000]
        for line in log.splitlines()
        if '"level": "ERROR"' in line or line.startswith("Traceback") or "Error:" in line
    ]
    return "\n".join(lines[:most]) or "(none logged)"


@dataclass
class Outcome:
    kind: str  # push | read | events
    sent: float  # time.monotonic() when sent
    elapsed: float
    status: int | None  # None: no answer
    body: Any
    domains: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()


def test_requests_answer_503_while_postgresql_restarts(
    private_server: PrivateServer, make_cluster: Callable[..., Cluster]
) -> None:
    cluster = make_cluster(server_url=private_server.url)
    name = f"restart-{uuid.uuid4().hex[:10]}"
    api = cluster.api(wait=False)
    key = cluster.key(name)
    ws = cluster.workspace_id(name)
    api.wait_healthy()
    record = Record()
    write_key = envelope_data(Http(key, [api.url], record).call("GET", "/api/v1/website"))[
        "writeKey"
    ]
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop = threading.Event()
    tag = uuid.uuid4().hex[:6]

    def timed(kind: str, send: Callable[[httpx.Client], httpx.Response], **extra: Any) -> None:
        with httpx.Client(timeout=REQUEST_BOUND_S * 3) as client:
            sent = time.monotonic()
            try:
                r: httpx.Response | None = send(client)
            except httpx.TransportError:
                r = None
            elapsed = time.monotonic() - sent
        body: Any = None
        if r is not None:
            with contextlib.suppress(ValueError):
                body = r.json()
        o = Outcome(kind, sent, elapsed, r.status_code if r is not None else None, body, **extra)
        with lock:
            outcomes.append(o)

    def api_load() -> None:
        n = 0
        headers = {"X-Api-Key": key}
        while not stop.is_set():
            domains = tuple(f"r{n}-{i}-{tag}.example.com" for i in range(10))
            accounts = [{"domain": d, "name": f"Name of {d}"} for d in domains]

            def post_accounts(
                c: httpx.Client, a: list[dict[str, Any]] = accounts
            ) -> httpx.Response:
                return c.post(
                    api.url + "/api/v1/accounts",
                    json={"accounts": a},
                    headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                )

            timed("push", post_accounts, domains=domains)
            timed(
                "read",
                lambda c: c.get(api.url + "/api/v1/accounts", params={"limit": 5}, headers=headers),
            )
            n += 1
            stop.wait(LOAD_EVERY_S)

    def event_load() -> None:
        auth = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
        while not stop.is_set():
            batch = [
                {"type": "track", "event": "Ping", "messageId": uuid.uuid4().hex,
                 "anonymousId": "anon-restart"}
                for _ in range(5)
            ]  # fmt: skip

            def post_batch(c: httpx.Client, b: list[dict[str, Any]] = batch) -> httpx.Response:
                return c.post(api.url + "/v1/batch", json={"batch": b}, headers=auth)

            timed("events", post_batch, message_ids=tuple(e["messageId"] for e in batch))
            stop.wait(LOAD_EVERY_S * 3)

    threads = [threading.Thread(target=api_load), threading.Thread(target=event_load)]
    for t in threads:
        t.start()
    try:
        time.sleep(UP_BEFORE_S)
        stopping = time.monotonic()
        private_server.stop("fast")
        down_at = time.monotonic()
        time.sleep(DOWN_S)
        # /healthz says so too (no envelope: it is for load balancers).
        health = httpx.get(api.url + "/healthz", timeout=REQUEST_BOUND_S)
        assert health.status_code == 503, (health.status_code, health.text)
        up_started = time.monotonic()
        private_server.start()
        up_at = time.monotonic()

        def first_success() -> Outcome | None:
            with lock:
                return next((o for o in outcomes if o.sent >= up_at and o.status == 200), None)

        first_ok = wait_until(
            f"a request to succeed within {RECOVER_S} s of the database's return",
            first_success,
            RECOVER_S,
            interval=0.05,
        )
        time.sleep(SETTLED_S)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=REQUEST_BOUND_S * 3)
    assert api.alive(), f"the API process died with the database:\n{api.tail()}"

    # Never a hang, never an answer other than 200, 503 (or, for the collector, its own 503).
    slow = [o for o in outcomes if o.status is None or o.elapsed > REQUEST_BOUND_S]
    assert not slow, f"requests with no answer or slower than {REQUEST_BOUND_S} s: {slow[:3]}"
    odd = [o for o in outcomes if o.status not in (200, 503)]
    assert not odd, (
        f"answers other than 200 and 503 around the restart (server stopped at "
        f"{stopping:.2f}..{down_at:.2f}, started at {up_started:.2f}..{up_at:.2f}): {odd[:3]}\n"
        f"the API process's errors:\n{errors_of(api.tail(10**6))}"
    )

    # While it is down: 503 in the envelope.
    down = [o for o in outcomes if down_at <= o.sent and o.sent + o.elapsed <= up_started]
    api_down = [o for o in down if o.kind != "events"]
    assert len(api_down) >= 5, f"too few API requests while the database was down: {api_down}"
    for o in api_down:
        assert o.status == 503, f"{o.kind} while the database was down: {o.status} {o.body}"
        assert isinstance(o.body, dict) and o.body.get("statusCode") == 503, o.body
        assert o.body.get("message") == "Service Unavailable", o.body
        assert o.body.get("customMessage"), f"a 503 without a customMessage: {o.body}"

    # After it is back: requests succeed again (the first within RECOVER_S, above), in the
    # same process, and from a moment after the first success on, every one of them.
    settled = [o for o in outcomes if o.sent >= first_ok.sent + 1.0]
    late = [o for o in settled if o.status != 200]
    assert len(settled) >= 5 and not late, (
        f"requests failing after the database came back and one had succeeded: {late[:3]}"
    )

    # Nothing acknowledged was lost: every pushed account answered 200, and every event
    # batch the collector accepted (it keeps them until a flush succeeds).
    acked = {
        d
        for o in outcomes
        if o.kind == "push" and o.status == 200
        for d, res in zip(o.domains, o.body["data"]["results"], strict=True)
        if res["status"] == "created"
    }
    assert any(o.kind == "push" and o.status == 200 and o.sent < down_at for o in outcomes)
    rows = cluster.sql("SELECT domain, name FROM accounts WHERE workspace_id = %s", (ws,))
    stored = dict(rows)
    assert len(stored) == len(rows)
    missing = sorted(acked - set(stored))
    assert not missing, f"{len(missing)} acknowledged accounts are gone, e.g. {missing[:5]}"
    wrong = [d for d in acked if stored[d] != f"Name of {d}"]
    assert not wrong, f"accounts stored with other values: {wrong[:5]}"
    sent = {d for o in outcomes if o.kind == "push" for d in o.domains}
    assert set(stored) <= sent

    events_acked = {
        m for o in outcomes if o.kind == "events" and o.status == 200 for m in o.message_ids
    }
    assert events_acked, "the collector accepted no events"

    def stored_events() -> set[str]:
        rows = cluster.sql("SELECT message_id FROM web_events WHERE workspace_id = %s", (ws,))
        return {r[0] for r in rows}

    wait_until(
        f"the {len(events_acked)} events the collector accepted to be written",
        lambda: events_acked <= stored_events(),
        40,
    )
    assert not record.failures, record.failures
    print(
        f"restart: {len(outcomes)} requests, {len(down)} while down, "
        f"first success {first_ok.sent - up_at:.2f} s after the restart; "
        f"{len(acked)} accounts and {len(events_acked)} events acknowledged"
    )
