"""`intently backup` / `intently restore` (the SQLite one-writer guard of `serve`, whose
lock a restore takes too, is `intently.serving`).

SQLite: an online copy through sqlite3's backup API (one read transaction, so the copy is
consistent while a server writes; WAL lets the writer go on), checked with
`PRAGMA integrity_check`. Restore replaces the file atomically, only while no server
holds the database's lock file. PostgreSQL: `pg_dump --format=custom` and
`pg_restore --clean --if-exists --single-transaction`, the password passed in PGPASSWORD
(never on a command line or in output); without those programs the commands are printed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import typer
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, make_url

from intently.cli.guards import SHARED_ENV, lock_path, refuse, sqlite_file, try_lock
from intently.kit.db import is_sqlite, normalise_url
from intently.kit.migrate import alembic_config, migrate
from intently.settings import get_settings

# SHARED_ENV is named here too: test harnesses import it from this module.
__all__ = ["SHARED_ENV", "register"]


# ---- backup and restore ------------------------------------------------------------------


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {rev.revision for rev in script.walk_revisions()}


def _check_revision(version: str | None, source: str) -> None:
    if version is None:
        raise refuse(f"{source} is not an Intently database (it has no alembic_version)")
    if version not in _known_revisions():
        raise refuse(
            f"{source} has schema revision {version!r}, which this Intently does not know: "
            "it is newer than this code (or not Intently's). Upgrade Intently, then restore."
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sqlite_version(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return str(row[0]) if row else None


def backup_sqlite(db: Path, out: Path) -> str:
    """A consistent, checked copy of `db` at `out`; returns its schema revision."""
    if not db.exists():
        raise refuse(f"database file {db} does not exist")
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    timeout = get_settings().sqlite_busy_timeout_ms / 1000
    try:
        src = sqlite3.connect(db, timeout=timeout)
        dst = sqlite3.connect(partial)
        try:
            # One step: the whole copy reads one snapshot; writers in WAL mode go on.
            src.backup(dst)
            # A single self-contained file, whatever the source's journal mode.
            dst.execute("PRAGMA journal_mode=DELETE")
            check = [r[0] for r in dst.execute("PRAGMA integrity_check").fetchall()]
            if check != ["ok"]:
                raise refuse(f"the copy of {db} failed its integrity check: {check[:5]}")
            version = _sqlite_version(dst)
        finally:
            dst.close()
            src.close()
        _check_revision(version, str(db))
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, out)
        _fsync_dir(out.parent)
    finally:
        partial.unlink(missing_ok=True)
    assert version is not None
    return version


def restore_sqlite(db: Path, source: Path, url: str) -> str:
    """Replace `db` by the backup `source` (no server may hold it), then migrate."""
    try:
        conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            check = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            version = _sqlite_version(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise refuse(f"{source} is not a SQLite database ({exc})") from None
    if check != ["ok"]:
        raise refuse(f"{source} failed its integrity check: {check[:5]}")
    _check_revision(version, str(source))
    held = try_lock(db)
    if held is None:
        raise refuse(
            f"a server is running on {db} (it holds {lock_path(db)}); stop it before restoring"
        )
    try:
        if db.exists():
            # Fold the old WAL into the old file first: a WAL left beside the new file
            # would be replayed onto it.
            old = sqlite3.connect(db, timeout=get_settings().sqlite_busy_timeout_ms / 1000)
            try:
                old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                old.close()
        partial = db.with_name(f".{db.name}.restore-{os.getpid()}")
        try:
            shutil.copyfile(source, partial)
            with open(partial, "rb") as f:
                os.fsync(f.fileno())
            for suffix in ("-wal", "-shm"):
                db.with_name(db.name + suffix).unlink(missing_ok=True)
            os.replace(partial, db)
            _fsync_dir(db.parent)
        finally:
            partial.unlink(missing_ok=True)
        migrate(url)
    finally:
        held.close()
    assert version is not None
    return version


@dataclass(frozen=True)
class PgTarget:
    """The libpq arguments and environment for a PostgreSQL URL (password in env only)."""

    args: list[str]
    env: dict[str, str]
    database: str

    @classmethod
    def of(cls, url: URL) -> PgTarget:
        args = []
        if url.host:
            args += ["--host", url.host]
        if url.port:
            args += ["--port", str(url.port)]
        if url.username:
            args += ["--username", url.username]
        env = {}
        if url.password:
            env["PGPASSWORD"] = str(url.password)
        for key, name in (("sslmode", "PGSSLMODE"), ("sslrootcert", "PGSSLROOTCERT")):
            value = url.query.get(key)
            if isinstance(value, str):
                env[name] = value
        return cls(args, env, url.database or "")

    def shown(self, program: str, *args: str) -> str:
        """The command line as a person would type it; the password stays a placeholder."""
        prefix = "PGPASSWORD='<password>' " if "PGPASSWORD" in self.env else ""
        extra = "".join(f"{k}={shlex.quote(v)} " for k, v in self.env.items() if k != "PGPASSWORD")
        return prefix + extra + shlex.join([program, *args])

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [program, *args],
            env=dict(os.environ, **self.env),
            capture_output=True,
            text=True,
            check=False,
        )


def _pg_missing(target: PgTarget, program: str, args: list[str]) -> typer.Exit:
    typer.echo(
        f"{program} is not on PATH (install the PostgreSQL client programs of the server's "
        "version). Run this instead:",
        err=True,
    )
    typer.echo(target.shown(program, *args))
    return typer.Exit(2)


_COPY = re.compile(
    r"^COPY \S*alembic_version \(version_num\) FROM stdin;\n(.*?)\n\\\.$", re.M | re.S
)


def _dump_revision(target: PgTarget, dump: Path) -> str | None:
    r = target.run("pg_restore", "--data-only", "--table=alembic_version", "--file=-", str(dump))
    if r.returncode != 0:
        raise refuse(f"{dump} is not a pg_dump custom-format file: {r.stderr.strip()[:300]}")
    m = _COPY.search(r.stdout)
    return m[1].strip().splitlines()[0] if m and m[1].strip() else None


def _other_sessions(url: str) -> int:
    # Only a restore on PostgreSQL needs the driver itself (and the job queue's URL
    # helper, which brings huey): loaded here, off every other command's start-up.
    import psycopg

    from intently.kit.jobs import libpq_url

    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def register(app: typer.Typer) -> None:
    @app.command()
    def backup(
        out: Path = typer.Argument(..., help="File to write (SQLite copy or pg_dump file)."),
        force: bool = typer.Option(False, "--force", help="Overwrite OUT if it exists."),
    ) -> None:
        """Back up the database (INTENTLY_DATABASE_URL) while servers run."""
        url = normalise_url(get_settings().database_url)
        out = out.resolve()
        if out.exists() and not force:
            raise refuse(f"{out} exists; pass --force to overwrite it")
        if not out.parent.is_dir():
            raise refuse(f"directory {out.parent} does not exist")
        db = sqlite_file(url)
        if is_sqlite(url):
            if db is None:
                raise refuse("an in-memory SQLite database cannot be backed up")
            version = backup_sqlite(db, out)
            typer.echo(f"backed up {db} to {out} ({out.stat().st_size:,} bytes, schema {version})")
            return
        target = PgTarget.of(make_url(url))
        args = [*target.args, "--format=custom", "--no-password", target.database]
        if shutil.which("pg_dump") is None:
            raise _pg_missing(target, "pg_dump", [*args, f"--file={out}"])
        partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
        try:
            r = target.run("pg_dump", *args, f"--file={partial}")
            if r.returncode != 0:
                raise refuse(f"pg_dump failed: {r.stderr.strip()[:500]}")
            dumped = _dump_revision(target, partial)
            if dumped is None:
                raise refuse(f"database {target.database} is not an Intently database")
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
        typer.echo(
            f"backed up {target.database} to {out} ({out.stat().st_size:,} bytes, "
            f"schema {dumped}); restore with `intently restore {out}`"
        )

    @app.command()
    def restore(
        source: Path = typer.Argument(..., help="A file `intently backup` wrote."),
        force: bool = typer.Option(
            False, "--force", help="PostgreSQL: restore even while other sessions are connected."
        ),
    ) -> None:
        """Replace the database (INTENTLY_DATABASE_URL) by a backup; stop the servers first."""
        url = normalise_url(get_settings().database_url)
        source = source.resolve()
        if not source.is_file():
            raise refuse(f"backup file {source} does not exist")
        if is_sqlite(url):
            db = sqlite_file(url)
            if db is None:
                raise refuse("an in-memory SQLite database cannot be restored into")
            version = restore_sqlite(db, source, url)
            typer.echo(f"restored {db} from {source} (schema {version}, now migrated)")
            return
        target = PgTarget.of(make_url(url))
        args = [
            *target.args,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--no-password",
            f"--dbname={target.database}",
            str(source),
        ]
        if shutil.which("pg_restore") is None:
            raise _pg_missing(target, "pg_restore", args)
        _check_revision(_dump_revision(target, source), str(source))
        others = _other_sessions(url)
        if others and not force:
            raise refuse(
                f"{others} other session(s) are connected to {target.database} (servers or "
                "workers?); stop them before restoring, or pass --force"
            )
        r = target.run("pg_restore", *args)
        if r.returncode != 0:
            raise refuse(f"pg_restore failed (nothing was changed): {r.stderr.strip()[:500]}")
        migrate(url)
        typer.echo(f"restored {target.database} from {source} (now migrated)")
