"""Engine, connection set-up and transactions for SQLite (embedded) and PostgreSQL.

Writes that change what the External API returns for an account go through `write_tx`
and take the workspace's change clock with `tick`. The clock is what makes delta sync
lossless (spec section 5): see `tick`.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import msgspec
from sqlalchemy import JSON, MetaData, create_engine, event, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from intently.kit.errors import UnprocessableEntity
from intently.kit.timefmt import now_us

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# JSON documents: JSONB on PostgreSQL, JSON text on SQLite.
JSONDoc = JSON().with_variant(JSONB(), "postgresql")


def normalise_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` and use the psycopg 3 driver for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url_or_engine: str | Engine | Connection) -> bool:
    if isinstance(url_or_engine, str):
        return url_or_engine.startswith("sqlite")
    return url_or_engine.dialect.name == "sqlite"


def make_engine(url: str, *, busy_timeout_ms: int = 30_000, pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    if is_sqlite(url):
        memory = url in ("sqlite://", "sqlite:///:memory:")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            poolclass=NullPool if memory else None,
            hide_parameters=True,
        )
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    # No pre-ping: it costs a round trip per checkout. A connection that died is
    # invalidated when it fails (the request answers 503) and replaced on next use.
    # hide_parameters: a failed statement's error text (logged) must not carry the values
    # bound into it, such as a write key being looked up.
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, hide_parameters=True)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event (below) issue BEGIN itself, so writes can ask for
        # BEGIN IMMEDIATE and take the write lock up front instead of failing to upgrade.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA cache_size=-16384")  # 16 MB a connection; the OS caches the rest
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def param_marker(conn: Connection) -> str:
    """The DB-API placeholder for hand-written hot-path SQL (exec_driver_sql)."""
    return "?" if conn.dialect.name == "sqlite" else "%s"


def in_values(conn: Connection, column: str, values: list[Any]) -> tuple[str, tuple[Any, ...]]:
    """`column IN (...)` for hand-written SQL: one array parameter on PostgreSQL (a long list
    of placeholders would defeat psycopg's query cache), placeholders on SQLite."""
    if conn.dialect.name == "sqlite":
        return f"{column} IN ({', '.join('?' * len(values))})", tuple(values)
    return f"{column} = ANY(%s)", (list(values),)


def fetch_all(conn: Connection, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a hand-written query straight from the driver's cursor (hot reads only)."""
    cur = conn.connection.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall())
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _driver_error(conn, cur, sql, params, exc) from exc
    finally:
        cur.close()


def iter_rows(
    conn: Connection, sql: str, params: tuple[Any, ...] = (), *, chunk: int = 16
) -> Iterator[tuple[Any, ...]]:
    """Rows of a hand-written query, `chunk` at a time from the driver, for a reader that
    may stop early and must not hold the whole result: on SQLite the rows it does not
    take are never made; on PostgreSQL they arrive and are dropped a chunk at a time."""
    cur = conn.connection.cursor()
    try:
        # psycopg's chunked mode needs libpq 17 (psycopg[binary] ships a newer one).
        chunked = conn.dialect.name != "sqlite" and conn.dialect.loaded_dbapi.pq.version() >= 170000
        if not chunked:
            cur.execute(sql, params)
            while rows := cur.fetchmany(chunk):
                yield from rows
        else:
            stream = cur.stream(sql, params, size=chunk)
            try:
                # Not `yield from`: closing this generator would close psycopg's too.
                for row in stream:  # noqa: UP028
                    yield row
            finally:
                # A reader that stopped early: read the rest rather than let psycopg
                # cancel the query, which would abort the caller's transaction.
                for _ in stream:
                    pass
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _driver_error(conn, cur, sql, params, exc) from exc
    finally:
        cur.close()


def _driver_error(
    conn: Connection, cur: Any, sql: str, params: tuple[Any, ...], exc: Any
) -> Exception:
    """The driver's own error, as SQLAlchemy's would be: a connection lost to a database
    restart is invalidated (not handed out again) and the request answers 503."""
    gone = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cur)
    if gone:
        conn.invalidate(exc)
    return DBAPIError.instance(
        sql,
        params,
        exc,
        conn.dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=gone,
        dialect=conn.dialect,
    )


def json_param(value: Any) -> str:
    """A JSON document as a statement parameter (TEXT on SQLite, cast to JSONB by PostgreSQL)."""
    return _json_encode(value).decode()


def json_value(value: Any) -> Any:
    """A JSON column read through the raw driver: text on SQLite, decoded on PostgreSQL."""
    if isinstance(value, str | bytes):
        return _json_decode(value)
    return value


# SQLite has one writer at a time. Threads of one process queue on this lock instead of
# polling the database file's lock in the busy handler (which sleeps, and is unfair).
_sqlite_write_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def _sqlite_write_lock(engine: Engine) -> threading.Lock:
    with _locks_guard:
        lock = _sqlite_write_locks.get(engine)
        if lock is None:
            lock = _sqlite_write_locks[engine] = threading.Lock()
        return lock


# Run inside each write transaction of the current request just before it commits: the
# gate marks a request's Idempotency-Key as "work committed" in the same transaction as
# the work, so a retry after a crash never does the work twice (gate/idempotency.py).
before_commit: ContextVar[Callable[[Connection], None] | None] = ContextVar(
    "intently_before_commit", default=None
)


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """One write transaction: BEGIN IMMEDIATE on SQLite, a normal transaction on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        with engine.connect() as conn, conn.begin():
            yield conn
            _before_commit(conn)
        return
    with _sqlite_write_lock(engine), engine.connect() as conn:
        conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn
            _before_commit(conn)


def _before_commit(conn: Connection) -> None:
    hook = before_commit.get()
    if hook is not None:
        hook(conn)


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


# SQLite calls the progress handler every this many virtual machine steps: often
# enough to stop within milliseconds, rarely enough to cost nothing measurable.
_PROGRESS_STEPS = 10_000
_PG_QUERY_CANCELED = "57014"


@contextmanager
def time_limit(conn: Connection, seconds: float, message: str) -> Iterator[None]:
    """Stop the statements run on `conn` in this block once `seconds` have passed since
    it began, answering UnprocessableEntity(message). For read-only work inside a
    transaction (read_tx), which the caller's exception then rolls back.

    SQLite: a progress handler interrupts the running statement at the deadline.
    PostgreSQL: `SET LOCAL statement_timeout` bounds each statement by the time left
    (set again before each), and a statement due after the deadline is not run."""
    deadline = time.monotonic() + seconds
    if conn.dialect.name == "sqlite":
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
        try:
            yield
        except DBAPIError as exc:
            if "interrupted" in str(exc.orig):
                raise UnprocessableEntity(message) from None
            raise
        finally:
            raw.set_progress_handler(None, 0)
        return

    def timeout(left: float) -> str:
        return f"SET LOCAL statement_timeout = {max(1, int(left * 1000))}"

    def before(_conn: Connection, cursor: Any, *_: Any) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise UnprocessableEntity(message)
        cursor.connection.execute(timeout(left))

    conn.exec_driver_sql(timeout(seconds))
    event.listen(conn, "before_cursor_execute", before)
    try:
        yield
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == _PG_QUERY_CANCELED:
            raise UnprocessableEntity(message) from None
        raise
    finally:
        event.remove(conn, "before_cursor_execute", before)


def tick(conn: Connection, workspace_id: int) -> int:
    """Advance the workspace's change clock and return it, holding it until commit.

    Every write that changes what an account returns stamps `changed_at` with this value.
    The clock row stays locked until the transaction ends (the row lock on PostgreSQL, the
    database write lock on SQLite), so stamps are handed out in commit order: once a
    reader sees the clock at S, every change stamped at or before S is committed and
    visible, and every later commit is stamped after S. A delta walk therefore reports
    S as its syncTimestamp and filters on `changed_at > lastSync`, and loses nothing.
    """
    greatest = "MAX" if conn.dialect.name == "sqlite" else "GREATEST"
    row = conn.execute(
        text(
            f"UPDATE workspaces SET change_clock = {greatest}(change_clock + 1, :now) "
            "WHERE id = :ws RETURNING change_clock"
        ),
        {"now": now_us(), "ws": workspace_id},
    ).one()
    return int(row[0])


def lock_workspace(conn: Connection, workspace_id: int) -> None:
    """Serialise this transaction with the workspace's other writers until it ends.

    For writes that check then insert by a natural key (deals, activities, contacts,
    custom fields): two concurrent pushes of the same key then see each other instead of
    one failing on the unique index. SQLite writers are serialised already.
    """
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql("SELECT id FROM workspaces WHERE id = %s FOR UPDATE", (workspace_id,))


def read_clock(conn: Connection, workspace_id: int) -> int:
    m = param_marker(conn)
    rows = fetch_all(conn, f"SELECT change_clock FROM workspaces WHERE id = {m}", (workspace_id,))
    return int(rows[0][0])


_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database", "disk i/o error")


def database_unavailable(exc: DBAPIError) -> bool:
    """A database that cannot answer now (down, restarting, locked), not a bug in a query."""
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    if type(exc.orig).__module__.startswith("sqlite3"):
        return str(exc.orig).lower().startswith(_SQLITE_UNAVAILABLE)
    return True
