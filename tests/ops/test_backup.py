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
import psycopg
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


def _restore_refused(url: str, live: Path, bad: Path) -> str:
    """`intently restore bad` is refused and leaves the live file, byte for byte, alone."""
    before = live.read_bytes()
    r = intently_cmd(url, "restore", str(bad))
    assert r.returncode == 2, r.stdout + r.stderr
    assert live.read_bytes() == before
    assert not list(live.parent.glob(f"{live.name}.replaced-*"))
    return str(r.stderr)


def test_sqlite_restore_refuses_a_schema_the_migrations_do_not_make(
    tmp_path: Path, is_postgres: bool
) -> None:
    if is_postgres:
        pytest.skip("SQLite files")
    from intently.kit.migrate import migrate

    live = tmp_path / "live.sqlite3"
    url = f"sqlite:///{live}"
    migrate(url)
    _, ws_a, _ = new_workspace(url)
    _, ws_b, _ = new_workspace(url)
    out = tmp_path / "backup.sqlite3"
    assert intently_cmd(url, "backup", str(out)).returncode == 0

    # A trigger that copies one workspace's new accounts into another would run on the
    # live data once restored.
    with sqlite3.connect(out) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(accounts)")]
        others = ", ".join(c for c in cols if c not in ("workspace_id", "id"))
        conn.execute(
            f"CREATE TRIGGER leak AFTER INSERT ON accounts WHEN NEW.workspace_id = {ws_a} "
            f"BEGIN INSERT INTO accounts (workspace_id, id, {others}) "
            f"SELECT {ws_b}, NEW.id || 'x', {others} FROM accounts "
            "WHERE workspace_id = NEW.workspace_id AND id = NEW.id; END"
        )
    err = _restore_refused(url, live, out)
    assert "does not have the schema" in err and "unexpected trigger 'leak'" in err, err

    # A table altered in place (an extra column) differs from what the migrations make.
    altered = tmp_path / "altered.sqlite3"
    assert intently_cmd(url, "backup", str(altered)).returncode == 0
    with sqlite3.connect(altered) as conn:
        conn.execute("ALTER TABLE accounts ADD COLUMN spare TEXT")
        conn.execute("CREATE VIEW everything AS SELECT * FROM accounts")
    err = _restore_refused(url, live, altered)
    assert "table 'accounts' differs" in err and "unexpected view 'everything'" in err, err

    # A file with only alembic_version is no Intently database.
    with sqlite3.connect(live) as conn:
        head = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    bare = tmp_path / "bare.sqlite3"
    with sqlite3.connect(bare) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES (?)", (head,))
    err = _restore_refused(url, live, bare)
    assert "missing table 'accounts'" in err and "does not have the schema" in err, err


def test_sqlite_restore_keeps_the_replaced_database(tmp_path: Path, is_postgres: bool) -> None:
    if is_postgres:
        pytest.skip("SQLite files")
    from intently.kit.migrate import migrate

    live = tmp_path / "live.sqlite3"
    url = f"sqlite:///{live}"
    migrate(url)
    out = tmp_path / "backup.sqlite3"
    assert intently_cmd(url, "backup", str(out)).returncode == 0
    _, ws, _ = new_workspace(url)  # made after the backup: only the kept copy has it
    r = intently_cmd(url, "restore", str(out))
    assert r.returncode == 0, r.stderr
    kept = list(tmp_path.glob("live.sqlite3.replaced-*"))
    assert len(kept) == 1 and f"kept at {kept[0]}" in r.stdout, r.stdout
    with sqlite3.connect(kept[0]) as conn:
        assert conn.execute("SELECT count(*) FROM workspaces WHERE id = ?", (ws,)).fetchone() == (
            1,
        )
    with sqlite3.connect(live) as conn:
        assert conn.execute("SELECT count(*) FROM workspaces WHERE id = ?", (ws,)).fetchone() == (
            0,
        )


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
    # The replaced database was dumped beside the backup first.
    kept = list(tmp_path.glob("*.replaced-*.dump"))
    assert len(kept) == 2 and any(f"kept in {k}" in r.stdout for k in kept), r.stdout
    server = servers(url)
    r = httpx.get(server.url + "/healthz")
    assert r.status_code == 200
    # While a server is connected, restore refuses (unless --force).
    r = intently_cmd(url, "restore", str(out))
    assert r.returncode == 2 and "other session(s) are connected" in r.stderr, r.stderr
    # The password never reaches the output.
    assert "PGPASSWORD" not in r.stderr


def test_postgres_restore_refuses_a_schema_the_migrations_do_not_make(
    new_database: Callable[[], str], tmp_path: Path, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("pg_dump files")
    from intently.kit.jobs import libpq_url

    def sql(url: str, *statements: str) -> None:
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    live = new_database()
    _, ws, _ = new_workspace(live)
    before = domains(live, ws)
    # A dump of a database with a trigger added: restored, it would run on the live data.
    tainted = new_database()
    sql(
        tainted,
        "CREATE FUNCTION leak() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "CREATE TRIGGER leak AFTER INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION leak()",
    )
    out = tmp_path / "tainted.dump"
    assert intently_cmd(tainted, "backup", str(out)).returncode == 0
    r = intently_cmd(live, "restore", str(out))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "does not have the schema" in r.stderr and "TRIGGER public accounts leak" in r.stderr
    assert domains(live, ws) == before and not list(tmp_path.glob("*.replaced-*"))

    # A dump of a database with only alembic_version (every other table dropped).
    bare = new_database()
    with psycopg.connect(libpq_url(bare), autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ]
        for name in names:
            conn.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')
    out = tmp_path / "bare.dump"
    assert intently_cmd(bare, "backup", str(out)).returncode == 0
    r = intently_cmd(live, "restore", str(out))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "missing table 'accounts'" in r.stderr, r.stderr
    assert domains(live, ws) == before and not list(tmp_path.glob("*.replaced-*"))


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
