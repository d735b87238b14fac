"""`intently backup` / `intently restore` (the SQLite one-writer guard of `serve`, whose
lock a restore takes too, is `intently.serving`).

SQLite: an online copy through sqlite3's backup API (one read transaction, so the copy is
consistent while a server writes; WAL lets the writer go on), checked with
`PRAGMA integrity_check`. Restore replaces the file atomically, only while no server
holds the database's lock file. PostgreSQL: `pg_dump --format=custom` and
`pg_restore --clean --if-exists --single-transaction`, the password passed in PGPASSWORD
(never on a command line or in output); without those programs the commands are printed.

A backup file is not trusted: restore refuses one whose schema is not exactly what the
migrations make at its revision (a trigger or view slipped in would run on live data),
and keeps the replaced database (`<file>.replaced-<time>`, or a pg_dump beside the
backup) so that a restore can be undone; a restored database that fails its checks
after migrating is swapped back at once.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import typer
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, make_url

from intently.cli.guards import SHARED_ENV, lock_path, refuse, sqlite_file, try_lock
from intently.kit.db import is_sqlite, normalise_url
from intently.kit.migrate import (
    alembic_config,
    check,
    migrate,
    schema_differences,
    sqlite_schema,
    sqlite_schema_at,
)
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


def _verify_sqlite(path: Path, source: str, *, at_head: bool = False) -> str:
    """Check a SQLite file fully: integrity, a known revision, and exactly the schema the
    migrations build up to that revision (no table, index, trigger or view more, less or
    different); returns the revision. A trigger slipped into a backup would run on the
    live data once restored, so nothing but what the migrations make is accepted."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            check = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            version = _sqlite_version(conn)
            found = sqlite_schema(conn) if check == ["ok"] else {}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise refuse(f"{source} is not a SQLite database ({exc})") from None
    if check != ["ok"]:
        raise refuse(f"{source} failed its integrity check: {check[:5]}")
    _check_revision(version, source)
    assert version is not None
    if at_head and version != _head_revision():
        raise refuse(f"{source} is at schema {version}, not the newest ({_head_revision()})")
    problems = schema_differences(found, sqlite_schema_at(version))
    if problems:
        shown = "; ".join(problems[:20]) + ("; ..." if len(problems) > 20 else "")
        raise refuse(
            f"{source} does not have the schema Intently's migrations make at revision "
            f"{version} ({len(problems)} difference(s)): {shown}"
        )
    return version


def _head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def _unlink_sidecars(db: Path) -> None:
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


def _keep(db: Path) -> Path:
    """A second name for the live file before it is replaced (a hard link: no copy, and the
    replacement below gives `db` a new file, so this one keeps the old data)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = db.with_name(f"{db.name}.replaced-{stamp}")
    n = 1
    while kept.exists():
        n += 1
        kept = db.with_name(f"{db.name}.replaced-{stamp}-{n}")
    try:
        os.link(db, kept)
    except OSError:  # a file system without hard links
        shutil.copyfile(db, kept)
    return kept


@dataclass(frozen=True)
class Restored:
    version: str
    kept: Path | None  # the replaced database, kept until the operator deletes it


def restore_sqlite(db: Path, source: Path, url: str) -> Restored:
    """Replace `db` by the backup `source` (no server may hold it), then migrate.

    The backup is checked before anything changes; the live file is kept beside it as
    `<name>.replaced-<time>` and put back if the restored database fails its checks
    (integrity, schema, the migrations to the newest revision)."""
    version = _verify_sqlite(source, str(source))
    held = try_lock(db)
    if held is None:
        raise refuse(
            f"a server is running on {db} (it holds {lock_path(db)}); stop it before restoring"
        )
    try:
        kept: Path | None = None
        if db.exists():
            # Fold the old WAL into the old file first: a WAL left beside the new file
            # would be replayed onto it, and the kept copy must hold every commit.
            old = sqlite3.connect(db, timeout=get_settings().sqlite_busy_timeout_ms / 1000)
            try:
                old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                old.close()
            kept = _keep(db)
            _fsync_dir(db.parent)
        partial = db.with_name(f".{db.name}.restore-{os.getpid()}")
        try:
            shutil.copyfile(source, partial)
            with open(partial, "rb") as f:
                os.fsync(f.fileno())
            _unlink_sidecars(db)
            os.replace(partial, db)
            _fsync_dir(db.parent)
        finally:
            partial.unlink(missing_ok=True)
        try:
            migrate(url)
            _verify_sqlite(db, f"the restored {db}", at_head=True)
        except BaseException as exc:
            _put_back(db, kept)
            if not isinstance(exc, Exception):  # Ctrl-C: the old file is back; stop
                raise
            where = f"{db} is back as it was" if kept else f"{db} was removed"
            reason = "see above" if isinstance(exc, typer.Exit) else f"{type(exc).__name__}: {exc}"
            raise refuse(f"the restored database failed its checks ({reason}); {where}") from None
    finally:
        held.close()
    return Restored(version, kept)


def _put_back(db: Path, kept: Path | None) -> None:
    _unlink_sidecars(db)
    if kept is None:
        db.unlink(missing_ok=True)
        return
    os.replace(kept, db)
    _fsync_dir(db.parent)


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


# What pg_dump writes for the tables, keys and indexes the migrations make (and grants and
# comments an operator may add); a trigger, view, function, rule or policy is code that
# would run on the live data, and the migrations make none.
_PG_KINDS = (
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "TABLE DATA",
    "FK CONSTRAINT",
    "CONSTRAINT",
    "DEFAULT",
    "INDEX",
    "SEQUENCE",
    "TABLE",
    "ACL",
    "COMMENT",
)
_TOC_LINE = re.compile(r"^\d+; \d+ \d+ (.*)$")


def _check_dump_schema(target: PgTarget, dump: Path, version: str) -> None:
    """Refuse a dump holding objects the migrations do not make at `version`: other kinds
    of object, or other tables and indexes (named as the migrations name them on SQLite
    too, so SQLite's build of that revision is the reference)."""
    r = target.run("pg_restore", "--list", str(dump))
    if r.returncode != 0:
        raise refuse(f"{dump} is not a pg_dump custom-format file: {r.stderr.strip()[:300]}")
    found: set[tuple[str, str]] = set()
    problems: list[str] = []
    for line in r.stdout.splitlines():
        m = _TOC_LINE.match(line)
        if not m:
            continue
        rest = m[1]
        kind = next((k for k in _PG_KINDS if rest.startswith(k + " ")), None)
        if kind is None:
            problems.append(f"unexpected {' '.join(rest.split()[:-1])}")
            continue
        if kind in ("TABLE", "INDEX"):
            parts = rest[len(kind) :].split()
            if len(parts) >= 2:
                found.add((kind.lower(), parts[1]))
    expected = {
        (kind, name) for kind, name in sqlite_schema_at(version) if kind in ("table", "index")
    }
    tables_first = sorted(found ^ expected, key=lambda e: (e[0] != "table", e[1]))
    problems += [f"unexpected {k} '{n}'" for k, n in tables_first if (k, n) in found]
    problems += [f"missing {k} '{n}'" for k, n in tables_first if (k, n) in expected]
    if problems:
        shown = "; ".join(problems[:20]) + ("; ..." if len(problems) > 20 else "")
        raise refuse(
            f"{dump} does not have the schema Intently's migrations make at revision "
            f"{version} ({len(problems)} difference(s)): {shown}"
        )


def _keep_pg(target: PgTarget, where: Path) -> Path:
    """A pg_dump of the live database before it is replaced, beside the backup."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = where / f"{target.database}.replaced-{stamp}.dump"
    n = 1
    while kept.exists():
        n += 1
        kept = where / f"{target.database}.replaced-{stamp}-{n}.dump"
    args = [*target.args, "--format=custom", "--no-password", target.database]
    r = target.run("pg_dump", *args, f"--file={kept}")
    if r.returncode != 0:
        kept.unlink(missing_ok=True)
        raise refuse(
            f"could not keep a copy of {target.database} before replacing it (nothing was "
            f"changed): {r.stderr.strip()[:500]}"
        )
    return kept


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
            restored = restore_sqlite(db, source, url)
            typer.echo(f"restored {db} from {source} (schema {restored.version}, now migrated)")
            if restored.kept is not None:
                typer.echo(
                    f"the replaced database is kept at {restored.kept}; delete it once the "
                    "restored one is what you want"
                )
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
        version = _dump_revision(target, source)
        _check_revision(version, str(source))
        assert version is not None
        _check_dump_schema(target, source, version)
        others = _other_sessions(url)
        if others and not force:
            raise refuse(
                f"{others} other session(s) are connected to {target.database} (servers or "
                "workers?); stop them before restoring, or pass --force"
            )
        kept = _keep_pg(target, source.parent)
        r = target.run("pg_restore", *args)
        if r.returncode != 0:
            raise refuse(f"pg_restore failed (nothing was changed): {r.stderr.strip()[:500]}")
        try:
            migrate(url)
            check(url)
        except Exception as exc:
            back = target.run("pg_restore", *args[:-1], str(kept))
            state = (
                f"{target.database} is back as it was"
                if back.returncode == 0
                else f"putting it back failed too ({back.stderr.strip()[:300]}); "
                f"restore {kept} by hand"
            )
            raise refuse(
                f"the restored database does not match the migrations ({exc}); {state}"
            ) from None
        typer.echo(f"the replaced database is kept in {kept}; delete it once you are satisfied")
        typer.echo(f"restored {target.database} from {source} (now migrated)")
