"""Idempotency-Key: the first response to a key, replayed for `ttl` to the same request.

A request with a new key claims it (a row with no response yet) before it runs, and stores
its response after. The same key with the same request then gets the stored response,
without the work being done again; with another request (method, path, query or body
differ) it is refused (422); while the first is still running, a second waits its turn
(409 with Retry-After: still in progress). The rows live in the application database,
so every process shares them.

A claim is held for `stale` and renewed every third of that by its process's
`Heartbeat`, a thread of its own: neither a starved event loop nor a full thread pool
delays it, so the claim of a running request does not lapse; that of a process that
died lapses within `stale`, and the next retry runs the request. A retry that reaches
the claim's own process is told to wait whatever the hold says.

A claim is identified by its `created_at` (the token): a retry that takes a lapsed
claim over sets a new one. The request's own write transactions mark the key COMMITTED
just before they commit (`kit.db.before_commit`), in the same transaction as the work,
and only while they still hold the claim: a request whose claim was taken over (its
process froze past `stale`) has its work refused, so the work is done once. And if a
request stops after its work committed but before its answer was stored, a retry is
told so (409, "carried out, answer not stored") instead of doing the work again; if it
ended with a server error after some of its work committed, the retry is told that
(409, FAILED). Work that may be done again (a scoring run recomputes) runs inside
`redoable()`: its commits do not mark the key, so a retry after a failure runs it again.

Responses that say nothing about the work (5xx, 401, 429) are not stored: the claim is
dropped, unless the work committed, and a retry with the key runs the request.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from intently.gate.tables import idempotency_keys as t
from intently.kit.db import before_commit, write_tx
from intently.kit.errors import Conflict
from intently.kit.timefmt import now_us

log = logging.getLogger("intently.gate")

KEY_MAX = 255
# Statuses that are not HTTP statuses: a claim whose work committed and whose answer is
# not stored yet; and one whose request then ended with a server error (not stored).
COMMITTED = 0
FAILED = 1
Verdict = Literal["run", "replay", "mismatch", "busy", "lost", "failed"]
Held = Callable[[int, str, int], bool]  # whether (workspace, key, token) runs here now


class TakenOver(Conflict):
    """409: this request's claim lapsed and a retry took it over; its work is refused."""


@dataclass(frozen=True, slots=True)
class Stored:
    status: int
    content_type: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    verdict: Verdict
    stored: Stored | None = None
    token: int = 0  # with "run": the claim's created_at, which identifies it


def valid_key(key: str) -> bool:
    """1 to 255 printable ASCII characters (a UUID is the usual choice)."""
    return 0 < len(key) <= KEY_MAX and key.isascii() and key.isprintable()


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    h = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, body):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def storable(status: int) -> bool:
    """Whether a response records the outcome of the work (and so is replayed)."""
    return status < 500 and status not in (401, 408, 429)


def claim(
    engine: Engine,
    ws: int,
    key: str,
    fp: str,
    *,
    now: int,
    ttl_us: int,
    stale_us: int,
    held: Held | None = None,
) -> Claim:
    """Claim `key` for a request with fingerprint `fp`, or say what to answer instead.
    `held` tells the claims of requests running in this process (alive, whatever their
    hold says)."""
    with write_tx(engine) as conn:
        row = _row(conn, ws, key)
        while row is None:
            if _insert_new(conn, ws, key, fp, now, stale_us):
                return Claim("run", token=now)
            # Another process inserted the same new key between our read and our insert
            # (on PostgreSQL; SQLite's write transactions are serial): its row decides.
            row = _row(conn, ws, key)
        old_fp, status, ctype, body, created, claimed_until = row
        if created <= now - ttl_us:
            _take_over(conn, ws, key, fp, now, stale_us)  # expired: a new key as far as we know
            return Claim("run", token=now)
        if old_fp != fp:
            return Claim("mismatch")
        if status == FAILED:
            return Claim("failed")
        if status is not None and status != COMMITTED:
            return Claim("replay", Stored(int(status), ctype, bytes(body or b"")))
        if claimed_until > now or (held is not None and held(ws, key, int(created))):
            return Claim("busy")
        if status == COMMITTED:
            return Claim("lost")  # it stopped after the work, before the answer
        _take_over(conn, ws, key, fp, now, stale_us)  # it stopped mid-request
        return Claim("run", token=now)


def _insert_new(conn: Connection, ws: int, key: str, fp: str, now: int, stale_us: int) -> bool:
    """The claim of a key new to us; False, with nothing written, when a row for the key
    came first. ON CONFLICT waits for a concurrent insert of the key to commit (or roll
    back) and keeps the transaction usable, so the caller reads that row instead."""
    values = {
        "workspace_id": ws,
        "key": key,
        "fingerprint": fp,
        "created_at": now,
        "claimed_until": now + stale_us,
    }
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = (
        dialect_insert(t)
        .values(values)
        .on_conflict_do_nothing(index_elements=[t.c.workspace_id, t.c.key])
        .returning(t.c.created_at)  # rowcount says -1 here on psycopg: a row says it was new
    )
    return conn.execute(stmt).first() is not None


def _row(conn: Connection, ws: int, key: str) -> tuple[Any, ...] | None:
    query = select(
        t.c.fingerprint, t.c.status, t.c.content_type, t.c.body, t.c.created_at, t.c.claimed_until
    ).where(t.c.workspace_id == ws, t.c.key == key)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    found = conn.execute(query).first()
    return None if found is None else tuple(found)


def _take_over(conn: Connection, ws: int, key: str, fp: str, now: int, stale_us: int) -> None:
    conn.execute(
        update(t)
        .where(t.c.workspace_id == ws, t.c.key == key)
        .values(
            fingerprint=fp,
            status=None,
            content_type=None,
            body=None,
            created_at=now,
            claimed_until=now + stale_us,
        )
    )


def _mine(ws: int, key: str, token: int) -> Any:
    return and_(t.c.workspace_id == ws, t.c.key == key, t.c.created_at == token)


def _unanswered() -> Any:
    return or_(t.c.status.is_(None), t.c.status == COMMITTED)


def complete(
    engine: Engine,
    ws: int,
    key: str,
    token: int,
    status: int,
    content_type: str | None,
    body: bytes,
) -> None:
    """Store the response of the request that holds the claim `token`."""
    with write_tx(engine) as conn:
        conn.execute(
            update(t)
            .where(_mine(ws, key, token), _unanswered())
            .values(status=status, content_type=content_type, body=body)
        )


def mark_committed(conn: Connection, ws: int, key: str, token: int) -> None:
    """In the work's own transaction: the work of this claim is committed with it; or
    TakenOver, which rolls the work back, when the claim is no longer this request's."""
    # Locks the row only while unmarked (the first commit), from here to the commit.
    marked = conn.execute(
        update(t).where(_mine(ws, key, token), t.c.status.is_(None)).values(status=COMMITTED)
    ).rowcount
    if marked:
        return
    status = conn.execute(select(t.c.status).where(_mine(ws, key, token))).first()
    if status is None or status[0] != COMMITTED:
        raise TakenOver(
            f"The claim on Idempotency-Key '{key}' lapsed while this request ran and a retry "
            "with the key took it over; this request's changes were not saved: the retry's "
            "answer stands (send the key again to get it)"
        )


def renew(engine: Engine, claims: list[tuple[int, str, int]], until: int) -> None:
    """Extend the claims (workspace, key, token) of requests that are still running."""
    with write_tx(engine) as conn:
        for ws, key, token in claims:
            conn.execute(
                update(t).where(_mine(ws, key, token), _unanswered()).values(claimed_until=until)
            )


def release(engine: Engine, ws: int, key: str, token: int) -> None:
    """After a request ended without an answer to store: drop its claim, so that a retry
    runs the request; but a claim whose work committed stays, FAILED, so that a retry is
    told the work was done (and how it ended) rather than do it again."""
    with write_tx(engine) as conn:
        mine = _mine(ws, key, token)
        conn.execute(delete(t).where(mine, t.c.status.is_(None)))
        conn.execute(
            update(t).where(mine, t.c.status == COMMITTED).values(status=FAILED, claimed_until=0)
        )


@contextmanager
def redoable() -> Iterator[None]:
    """Around work that may safely be done again (it recomputes, like a scoring run): its
    commits do not mark the request's Idempotency-Key, so after a failure or a dead
    process a retry with the key runs it again instead of being told it was done."""
    hook = before_commit.set(None)
    try:
        yield
    finally:
        before_commit.reset(hook)


class Heartbeat:
    """Renews the claims of this process's running requests every third of `stale`, from
    a thread of its own (started with the first claim, ended when none is left)."""

    def __init__(self, engine: Engine, stale_us: int) -> None:
        self.engine = engine
        self.stale_us = stale_us
        self._held: set[tuple[int, str, int]] = set()
        self._lock = threading.Lock()
        self._beating = False

    def hold(self, ws: int, key: str, token: int) -> None:
        with self._lock:
            self._held.add((ws, key, token))
            if not self._beating:
                self._beating = True
                threading.Thread(
                    target=self._beat, name="intently-idempotency-heartbeat", daemon=True
                ).start()

    def drop(self, ws: int, key: str, token: int) -> None:
        with self._lock:
            self._held.discard((ws, key, token))

    def holds(self, ws: int, key: str, token: int) -> bool:
        with self._lock:
            return (ws, key, token) in self._held

    def _beat(self) -> None:
        while True:
            time.sleep(self.stale_us / 3_000_000)
            with self._lock:
                held = sorted(self._held)  # rows locked in one order, as everywhere
                if not held:
                    self._beating = False
                    return
            try:
                renew(self.engine, held, now_us() + self.stale_us)
            except Exception:  # the next beat tries again; the thread must not die
                log.exception("renewing %d Idempotency-Key claims failed", len(held))


def sweep(engine: Engine, *, now: int, ttl_us: int) -> int:
    """Delete the keys older than the time they are kept; returns how many."""
    with write_tx(engine) as conn:
        return int(conn.execute(delete(t).where(t.c.created_at <= now - ttl_us)).rowcount or 0)
