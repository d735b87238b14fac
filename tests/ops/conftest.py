"""Operations tests: databases of their own (a SQLite file, or a scratch PostgreSQL database
beside the test one) and real `intently serve` processes whose stderr (the logs) is kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from intently.auth.service import generate_key
from intently.cli.ops import SHARED_ENV
from intently.kit.db import make_engine
from intently.kit.jobs import libpq_url
from intently.kit.migrate import migrate
from tests.support.server import free_port


def _admin(database_url: str) -> str:
    return libpq_url(make_url(database_url).set(database="postgres").render_as_string(False))


@pytest.fixture
def new_database(
    database_url: str, is_postgres: bool, tmp_path: Path
) -> Iterator[Callable[[], str]]:
    """A factory of empty migrated databases of the test run's kind, dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        if not is_postgres:
            url = f"sqlite:///{tmp_path / f'ops-{uuid.uuid4().hex[:8]}.sqlite3'}"
        else:
            name = f"intently_ops_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(_admin(database_url), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            made.append(name)
            url = make_url(database_url).set(database=name).render_as_string(False)
        migrate(url)
        return url

    yield make
    if made:
        with psycopg.connect(_admin(database_url), autocommit=True) as conn:
            for name in made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_workspace(url: str) -> tuple[str, int, str]:
    """A fresh workspace: its API key, its id and its collector write key."""
    from intently.auth.repository import workspace_id_by_name
    from intently.ingest.writekeys import get_write_key

    name = f"ops-{uuid.uuid4().hex[:8]}"
    engine = make_engine(url)
    try:
        key = generate_key(engine, name, "ops@example.com")
        with engine.connect() as conn:
            ws = workspace_id_by_name(conn, name)
        assert ws is not None
        return key, ws, get_write_key(engine, ws)
    finally:
        engine.dispose()


def count(url: str, sql: str, **params: Any) -> int:
    from sqlalchemy import text

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql), params).scalar_one())
    finally:
        engine.dispose()


def command_env(url: str, **env: str) -> dict[str, str]:
    environ = dict(os.environ, INTENTLY_DATABASE_URL=url, COLUMNS="160", **env)
    environ.pop(SHARED_ENV, None)
    environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return environ


@dataclass
class Server:
    """`intently serve` in a subprocess; its stderr (the JSON logs) goes to a file."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    stopped: bool = field(default=False)

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM; the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.stopped = True


def start_server(url: str, tmp_path: Path, *args: str, **env: str) -> Server:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "intently", "serve", "--port", str(port), *args],
            env=command_env(url, INTENTLY_WEBHOOK_DISPATCH="false", **env),
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 40
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return Server(base, proc, log, port)
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers with `servers(url, *args, **env)`; any still running are killed after."""
    started: list[Server] = []

    def start(url: str, *args: str, **env: str) -> Server:
        s = start_server(url, tmp_path, *args, **env)
        started.append(s)
        return s

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def intently_cmd(url: str, *args: str, timeout: float = 60, **env: str) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "intently", *args],
        env=command_env(url, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
