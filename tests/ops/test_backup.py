"""`intently backup` while a server process is writing, and `intently restore`: the copy is
consistent (every 100-account push is in it whole or not at all), and a restore brings the
database back to exactly what the backup holds."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from intently.kit.db import make_engine
from tests.ops.conftest import Server, intently_cmd, new_workspace

BATCH = 100


def domains(url: str, ws: int) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT domain FROM accounts WHERE workspace_id = :ws"), {"ws": ws}
            )
            return {r[0] for r in rows}
    finally:
        engine.dispose()


class Writer(threading.Thread):
    """Pushes batches of 100 new accounts until stopped; counts the answered pushes."""

    def __init__(self, server: Server, key: str) -> None:
        super().__init__(daemon=True)
        self.server, self.key = server, key
        self.stop = threading.Event()
        self.pushed = 0
        self.errors: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=30) as c:
            n = 0
            while not self.stop.is_set():
                tag = uuid.uuid4().hex[:10]
                body = {
                    "accounts": [
                        {"domain": f"{tag}-{i}.example.com", "name": f"N{i}"} for i in range(BATCH)
                    ]
                }
                r = c.post("/api/v1/accounts", json=body, headers={"X-Api-Key": self.key})
                if r.status_code != 200:
                    self.errors.append(r.text[:300])
                    return
                n += 1
                self.pushed = n


def _backup_while_writing(url: str, servers: Callable[..., Server], out: Path) -> tuple[int, int]:
    """A backup taken mid-write; returns (workspace id, accounts pushed by then)."""
    key, ws, _ = new_workspace(url)
    server = servers(url)
    writer = Writer(server, key)
    writer.start()
    try:
        while writer.pushed < 3 and writer.is_alive():
            writer.join(0.05)
        r = intently_cmd(url, "backup", str(out))
        assert r.returncode == 0, r.stderr
        assert "backed up" in r.stdout and "schema" in r.stdout
        while writer.pushed < 6 and writer.is_alive():  # the writer went on meanwhile
            writer.join(0.05)
    finally:
        writer.stop.set()
        writer.join(30)
    assert not writer.errors, writer.errors
    assert server.terminate() == 0
    return ws, writer.pushed


def test_sqlite_backup_while_writing_and_restore(
    tmp_path: Path, servers: Callable[..., Server], is_postgres: bool
) -> None:
    if is_postgres:
        pytest.skip("the SQLite path (test_postgres_backup_and_restore is PostgreSQL's)")
    from intently.kit.migrate import migrate

    url = f"sqlite:///{tmp_path / 'live.sqlite3'}"
    migrate(url)
    out = tmp_path / "backup.sqlite3"
    ws, pushed = _backup_while_writing(url, servers, out)

    # The copy is a checked, self-contained SQLite file holding whole pushes only.
    with sqlite3.connect(out) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    saved = domains(f"sqlite:///{out}", ws)
    assert len(saved) % BATCH == 0 and BATCH <= len(saved) < pushed * BATCH
    live = domains(url, ws)
    assert len(live) == pushed * BATCH and saved < live

    r = intently_cmd(url, "restore", str(out))
    assert r.returncode == 0, r.stderr
    assert domains(url, ws) == saved
    # The restored database serves again.
    server = servers(url)
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_sqlite_restore_checks_the_file(tmp_path: Path, is_postgres: bool) -> None:
    if is_postgres:
        pytest.skip("SQLite files")
    from intently.kit.migrate import migrate

    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    migrate(url)
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    r = intently_cmd(url, "restore", str(other))
    assert r.returncode == 2 and "is not an Intently database" in r.stderr, r.stderr

    newer = tmp_path / "newer.sqlite3"
    assert intently_cmd(url, "backup", str(newer)).returncode == 0
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    r = intently_cmd(url, "restore", str(newer))
    assert r.returncode == 2, r.stderr
    assert "'ffffffffffff'" in r.stderr and "newer than this code" in r.stderr

    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a database at all" * 100)
    r = intently_cmd(url, "restore", str(junk))
    assert r.returncode == 2 and "is not a SQLite database" in r.stderr, r.stderr

    r = intently_cmd(url, "backup", str(newer))
    assert r.returncode == 2 and "exists; pass --force" in r.stderr, r.stderr


def test_postgres_backup_and_restore(
    new_database: Callable[[], str],
    servers: Callable[..., Server],
    tmp_path: Path,
    is_postgres: bool,
) -> None:
    if not is_postgres:
        pytest.skip("the PostgreSQL path (pg_dump / pg_restore)")
    url = new_database()
    out = tmp_path / "backup.dump"
    ws, pushed = _backup_while_writing(url, servers, out)
    live = domains(url, ws)
    assert len(live) == pushed * BATCH

    # Into an empty database: the dump holds whole pushes only.
    scratch = new_database()
    r = intently_cmd(scratch, "restore", str(out))
    assert r.returncode == 0, r.stderr
    saved = domains(scratch, ws)
    assert len(saved) % BATCH == 0 and BATCH <= len(saved) < len(live) and saved < live

    # Over the live database (servers stopped): back to the backup's state.
    r = intently_cmd(url, "restore", str(out))
    assert r.returncode == 0, r.stderr
    assert domains(url, ws) == saved
    server = servers(url)
    r = httpx.get(server.url + "/healthz")
    assert r.status_code == 200
    # While a server is connected, restore refuses (unless --force).
    r = intently_cmd(url, "restore", str(out))
    assert r.returncode == 2 and "other session(s) are connected" in r.stderr, r.stderr
    # The password never reaches the output.
    assert "PGPASSWORD" not in r.stderr


def test_postgres_commands_are_printed_without_pg_dump(
    database_url: str, is_postgres: bool, tmp_path: Path
) -> None:
    if not is_postgres:
        pytest.skip("PostgreSQL")
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(password="s3cret-pw").render_as_string(False)
    r = intently_cmd(url, "backup", str(tmp_path / "x.dump"), PATH="/nonexistent")
    assert r.returncode == 2
    assert "pg_dump is not on PATH" in r.stderr
    assert "PGPASSWORD='<password>' pg_dump --host 127.0.0.1" in r.stdout, r.stdout
    assert "--format=custom" in r.stdout and "s3cret-pw" not in r.stdout + r.stderr
