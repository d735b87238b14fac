"""Fault and load tests: real `intently serve --no-worker` and `intently worker` processes
on loopback, each test on a PostgreSQL database of its own, created for it and dropped
after it (even when it fails).

They run only when the suite runs on PostgreSQL (INTENTLY_TEST_DATABASE_URL): the
database server of the suite holds their databases; test_pg_restart starts a server of
its own so that restarting it disturbs no one else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from intently.kit.jobs import libpq_url
from tests.support.database import DB_ENV
from tests.support.server import free_port

BIN = Path(sys.executable).parent
INTENTLY = (
    [str(BIN / "intently")] if (BIN / "intently").exists() else [sys.executable, "-m", "intently"]
)

# The load must not be throttled: these tests are about correctness under concurrency and
# faults, and a 429 would only slow them down (the clients honour it anyway).
CLUSTER_ENV = {
    "INTENTLY_RATE_LIMIT_PER_MINUTE": "600000",
    "INTENTLY_RATE_LIMIT_BURST": "100000",
    "INTENTLY_RATE_LIMIT_COLLECTOR_PER_MINUTE": "6000000",
    "INTENTLY_RATE_LIMIT_COLLECTOR_BURST": "1000000",
    # The load comes from one address for many visitors: it plays a relay forwarding
    # them (docs/deploy.md, "The collector's trust model"), whose claims count in full
    # and are not bounded per address.
    "INTENTLY_COLLECTOR_TRUSTED_SENDERS": "127.0.0.1,::1",
    "INTENTLY_RATE_LIMIT_COLLECTOR_ADDRESS_PER_MINUTE": "0",
    "INTENTLY_WEBHOOK_DISPATCH": "false",
    "INTENTLY_LOG_LEVEL": "INFO",
}
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

# `intently worker` with every scoring claim held this many seconds instead of the
# production hold (minutes), so a test can see a dead worker's claim lapse.
_WORKER_WITH_HOLD = """
import sys
from intently.scoring import shards
hold_us = int(float(sys.argv[1]) * 1_000_000)
for kind in list(shards.CLAIM_HOLD_US):
    shards.CLAIM_HOLD_US[kind] = hold_us
sys.argv = ["intently", "worker"]
from intently.cli.main import main
main()
"""


def _suite_url() -> str:
    return os.environ.get(DB_ENV, "")


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The suite's PostgreSQL URL; the tests of this directory skip on any other database."""
    url = _suite_url()
    if not url.startswith("postgresql"):
        pytest.skip(
            "fault and load tests run real processes on PostgreSQL only: set "
            f"{DB_ENV}=postgresql+psycopg://... (it is {url.split(':', 1)[0] or 'unset'})"
        )
    return url


def with_database(url: str, name: str) -> str:
    """The SQLAlchemy URL `url` pointing at database `name`."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def admin_conninfo(url: str) -> str:
    """A libpq URL of the server's maintenance database (CREATE/DROP DATABASE run there)."""
    return libpq_url(with_database(url, "postgres"))


def create_database(url: str, name: str, template: str | None = None) -> None:
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin_conninfo(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')


def migrate(env: Mapping[str, str]) -> None:
    """`intently migrate` on env's INTENTLY_DATABASE_URL."""
    done = subprocess.run(
        [*INTENTLY, "migrate"], env=dict(env), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"intently migrate failed: {done.stderr[-2000:]}"


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(admin_conninfo(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---- processes ---------------------------------------------------------------------------


@dataclass
class Proc:
    """One `intently` process, its output in a log file (a pipe nobody reads would block it)."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    url: str = ""  # API processes: their base URL
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            out.write(f"---- start {' '.join(self.args)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until GET /healthz answers 200; fails with the process's output if it does not."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if not self.alive() or time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} ({self.url}) did not become healthy within {timeout:.0f} s "
                    f"(exit code {self.popen.poll() if self.popen else None}); its output:\n"
                    + self.tail()
                )
            time.sleep(0.1)

    def kill9(self) -> None:
        """SIGKILL: no clean-up of any kind, as a crash or the OOM killer would do."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            assert self.popen is not None
            self.popen.wait(timeout=STOP_TIMEOUT_S)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """Send `sig` and wait for the exit; SIGKILL after `timeout`. The exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=STOP_TIMEOUT_S)
        return self.popen.returncode


class Cluster:
    """A fresh database with `intently` API and worker processes on it."""

    def __init__(
        self,
        server_url: str,
        tmp: Path,
        env: Mapping[str, str] | None = None,
        *,
        drop: bool = True,
    ):
        self.server_url = server_url
        self.drop = drop  # False: the server is the test's own and goes away whole
        self.db_name = f"intently_faults_{uuid.uuid4().hex[:12]}"
        self.url = with_database(server_url, self.db_name)
        self.tmp = tmp
        self.env = dict(os.environ, **CLUSTER_ENV, **(env or {}), INTENTLY_DATABASE_URL=self.url)
        self.env.pop(DB_ENV, None)
        self.procs: list[Proc] = []
        self.created = False

    # database

    def create(self, template: str | None = None) -> Cluster:
        """Create the database (a copy of `template`, a migrated one, when given) and
        migrate it with `intently migrate`."""
        create_database(self.server_url, self.db_name, template)
        self.created = True
        migrate(self.env)
        return self

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query on the cluster's database (autocommit, a connection of its own)."""
        with psycopg.connect(libpq_url(self.url), autocommit=True, connect_timeout=10) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def key(self, workspace: str, email: str = "owner@example.com") -> str:
        """An API key from `intently keys generate` (the workspace is made on first use)."""
        return self.keys([workspace], email)[0]

    def keys(self, workspaces: list[str], email: str = "owner@example.com") -> list[str]:
        """`intently keys generate` for each workspace, all at once; the keys in order."""
        runs = [
            subprocess.Popen(
                [
                    *INTENTLY,
                    "keys",
                    "generate",
                    "--workspace",
                    ws,
                    "--email",
                    email,
                    "--create-workspace",
                ],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for ws in workspaces
        ]
        keys = []
        for run in runs:
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, f"intently keys generate failed: {err[-2000:]}"
            keys.append(out.strip().splitlines()[-1])
        return keys

    def workspace_id(self, name: str) -> int:
        rows = self.sql("SELECT id FROM workspaces WHERE name = %s", (name,))
        assert rows, f"no workspace named {name!r}"
        return int(rows[0][0])

    # processes

    def api(self, port: int | None = None, *, wait: bool = True) -> Proc:
        """`intently serve --no-worker` on a loopback port (a free one unless given)."""
        port = port or free_port()
        n = sum(1 for p in self.procs if p.name.startswith("api"))
        proc = Proc(
            f"api{n}",
            [*INTENTLY, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
            self.env,
            self.tmp / f"api-{port}.log",
            url=f"http://127.0.0.1:{port}",
        )
        self.procs.append(proc.start())
        if wait:
            proc.wait_healthy()
        return proc

    def worker(self, *, claim_hold_s: float | None = None) -> Proc:
        """`intently worker`; with `claim_hold_s`, its scoring claims are held that long."""
        n = sum(1 for p in self.procs if p.name.startswith("worker"))
        if claim_hold_s is None:
            args = [*INTENTLY, "worker"]
        else:
            args = [sys.executable, "-c", _WORKER_WITH_HOLD, str(claim_hold_s)]
        proc = Proc(f"worker{n}", args, self.env, self.tmp / f"worker{n}.log")
        self.procs.append(proc.start())
        return proc

    def enqueue(self, task: str) -> None:
        """Put one run of a task of intently.worker on the job queue, as its schedule would."""
        done = subprocess.run(
            [sys.executable, "-c", f"from intently.worker import {task}; {task}()"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"enqueueing {task} failed: {done.stderr[-2000:]}"

    def logs(self) -> str:
        return "\n".join(f"==== {p.name}\n{p.tail(1500)}" for p in self.procs)

    def close(self) -> None:
        for p in self.procs:
            p.stop(signal.SIGKILL)
        if self.created and self.drop:
            drop_database(self.server_url, self.db_name)


@pytest.fixture(scope="session")
def migrated_template(pg_server_url: str) -> Iterator[str]:
    """A database migrated once per test process, copied for each cluster (CREATE DATABASE
    ... TEMPLATE is much faster than migrating from nothing)."""
    name = f"intently_faults_tmpl_{uuid.uuid4().hex[:12]}"
    create_database(pg_server_url, name)
    try:
        migrate(dict(os.environ, INTENTLY_DATABASE_URL=with_database(pg_server_url, name)))
        yield name
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture
def make_cluster(
    pg_server_url: str, migrated_template: str, tmp_path: Path
) -> Iterator[Callable[..., Cluster]]:
    """A factory of clusters; every process is stopped and every database dropped after."""
    made: list[Cluster] = []

    def make(server_url: str | None = None, **env: str) -> Cluster:
        """A cluster on the suite's server, or on `server_url` (a server of the test's own,
        removed whole by the test: its database is not dropped)."""
        cluster = Cluster(server_url or pg_server_url, tmp_path, env, drop=server_url is None)
        made.append(cluster)
        return cluster.create(None if server_url else migrated_template)

    yield make
    for cluster in made:
        cluster.close()


# ---- HTTP ------------------------------------------------------------------------------------


@dataclass
class Record:
    """Every answer the clients saw, by status; shared by the load's threads."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # 5xx other than 503, with context
    unavailable: list[str] = field(default_factory=list)  # the first 503s, for the report
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, method: str, url: str, response: httpx.Response | None) -> None:
        status = response.status_code if response is not None else 0  # 0: no answer
        with self.lock:
            self.statuses[status] += 1
            if response is not None and status >= 500 and status != 503:
                self.failures.append(f"{method} {url}: {status} {response.text[:300]}")
            if status == 503 and len(self.unavailable) < 20:
                assert response is not None
                self.unavailable.append(f"{method} {url}: {response.text[:200]}")


class Http:
    """A thread's client to one workspace's API over several API processes (round robin),
    writes carrying an Idempotency-Key and retried with it, as the Python client does."""

    def __init__(
        self,
        key: str | None,
        urls: list[str],
        record: Record,
        *,
        timeout: float | httpx.Timeout = 30.0,
    ) -> None:
        self.key = key
        self.urls = list(urls)
        self.record = record
        self.turn = 0
        self.client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def next_url(self) -> str:
        self.turn += 1
        return self.urls[self.turn % len(self.urls)]

    def once(
        self,
        method: str,
        path: str,
        *,
        base: str | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response | None:
        """One request; None when no answer came (refused, reset, timed out)."""
        url = (base or self.next_url()) + path
        h = {"X-Api-Key": self.key} if self.key else {}
        h.update(headers or {})
        try:
            response = self.client.request(method, url, json=json, params=params, headers=h)
        except httpx.TransportError:
            response = None
        self.record.note(method, url, response)
        return response

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        deadline_s: float = 60.0,
        bases: list[str] | None = None,
    ) -> httpx.Response:
        """The first answer that is neither 429, 503, 409 (an Idempotency-Key still in use)
        nor missing, retrying with the same Idempotency-Key on the next process."""
        headers = {}
        if method != "GET":
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        deadline = time.monotonic() + deadline_s
        attempt = 0
        while True:
            base = bases[attempt % len(bases)] if bases else None
            r = self.once(method, path, base=base, json=json, params=params, headers=headers)
            retry = (
                r is None
                or r.status_code in (429, 503)
                # 409 with Retry-After: an earlier try with this Idempotency-Key still runs
                or (r.status_code == 409 and "retry-after" in r.headers)
            )
            if not retry:
                assert r is not None
                return r
            if time.monotonic() > deadline:
                what = "no answer" if r is None else f"{r.status_code} {r.text[:300]}"
                raise AssertionError(f"{method} {path}: still {what} after {deadline_s:.0f} s")
            wait = 0.2 * min(2**attempt, 10)
            if r is not None and r.headers.get("retry-after", "").isdigit():
                wait = min(float(r.headers["retry-after"]), 5.0)
            time.sleep(wait)
            attempt += 1


def envelope_data(r: httpx.Response) -> Any:
    """The `data` of a 200 envelope; fails with the answer otherwise."""
    assert r.status_code == 200, (
        f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:500]}"
    )
    body = r.json()
    assert body["statusCode"] == 200, body
    return body["data"]


def walk_accounts(
    http: Http, last_sync: str | None = None
) -> tuple[dict[str, dict[str, Any]], str]:
    """Every account (changed after `last_sync`) by rtp_aid, and the walk's syncTimestamp."""
    items: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    stamps: set[str] = set()
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        if last_sync:
            params["lastSync"] = last_sync
        page = envelope_data(http.call("GET", "/api/v1/accounts", params=params))
        for item in page["data"]:
            items[item["rtp_aid"]] = item
        stamps.add(page["syncTimestamp"])
        if not page["hasNextPage"]:
            assert len(stamps) == 1, f"one walk's pages carried different syncTimestamps: {stamps}"
            return items, page["syncTimestamp"]
        cursor = page["nextCursor"]


@dataclass
class Replica:
    """A delta-syncing client's copy of the accounts, as an integration would keep it."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    stamp: str | None = None
    syncs: int = 0

    def sync(self, http: Http) -> int:
        """One delta sync (a full walk the first time); how many items it brought."""
        changed, stamp = walk_accounts(http, self.stamp)
        self.items.update(changed)
        self.stamp = stamp
        self.syncs += 1
        return len(changed)


@contextmanager
def running(threads: list[threading.Thread]) -> Iterator[None]:
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for t in threads:
            t.join(timeout=120)


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """Poll `check` until it returns something truthy; fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
