"""The SQLite one-writer guards: `serve`, `worker` and `restore` refuse what would make a
second writing process on one SQLite file. A module of its own, light to import, so the
commands that only check (restore) do not load the server."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Any

import typer
from sqlalchemy.engine import make_url

from intently.kit.db import is_sqlite, normalise_url

ONE_WRITER = (
    "SQLite allows one writing process, and `intently serve` on a SQLite file is that process "
    "(it runs the API and the job worker together)."
)
USE_POSTGRES = (
    "to run several processes, point INTENTLY_DATABASE_URL at PostgreSQL "
    "(postgresql://user@host/db)."
)

# For test harnesses only: lets several `serve` processes share one SQLite file (each then
# waits on the others' write locks, up to the busy timeout). Not a setting on purpose.
SHARED_ENV = "INTENTLY_SQLITE_SHARED_SERVE"


# Held for the life of the process that took it (a `serve`, or a `restore` under way).
_held: list[IO[Any]] = []


def refuse(message: str) -> typer.Exit:
    """Print why to stderr; the caller raises the returned exit (status 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    url = normalise_url(url)
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).resolve()


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def try_lock(db: Path) -> IO[Any] | None:
    """An exclusive advisory lock on `<db>.lock`, or None when another process holds it."""
    db.parent.mkdir(parents=True, exist_ok=True)
    f = open(lock_path(db), "a+")  # noqa: SIM115 - held open on purpose, for the process's life
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def guard_serve(url: str, *, workers: int, worker: bool) -> None:
    """On SQLite: refuse what would make a second writer; else take the database's lock."""
    if not is_sqlite(normalise_url(url)):
        return
    if workers > 1:
        raise refuse(
            f"--workers {workers} would start {workers} server processes on one SQLite file. "
            f"{ONE_WRITER} Drop --workers (one process serves a real team) or, {USE_POSTGRES}"
        )
    if not worker:
        raise refuse(
            "--no-worker would leave the jobs (scheduled pulls, scoring) to a separate "
            f"`intently worker`, a second writer. {ONE_WRITER} Drop --no-worker or, "
            f"{USE_POSTGRES}"
        )
    db = sqlite_file(url)
    if db is None or os.environ.get(SHARED_ENV) == "1":
        return
    held = try_lock(db)
    if held is None:
        raise refuse(
            f"another `intently serve` (or a restore) is running on {db} (it holds "
            f"{lock_path(db)}). {ONE_WRITER} Stop the other one first or, {USE_POSTGRES}"
        )
    _held.append(held)


def guard_worker(url: str) -> None:
    """`intently worker` on SQLite would be a second writer beside `serve`."""
    if is_sqlite(normalise_url(url)):
        raise refuse(
            f"`intently worker` on SQLite would be a second writing process. {ONE_WRITER} "
            f"Run `intently serve` alone (it already runs the jobs) or, {USE_POSTGRES}"
        )
