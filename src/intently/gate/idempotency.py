"""Idempotency-Key: the first response to a key, replayed for `ttl` to the same request.

A request with a new key claims it (a row with no response yet) before it runs, and stores
its response after. The same key with the same request then gets the stored response,
without the work being done again; with another request (method, path, query or body
differ) it is refused (422); while the first is still running, a second waits its turn
(409, retry). A running request renews its claim every third of `stale`, so the claim
of a process that died lapses within `stale` and the next retry runs the request. The
rows live in the application database, so every process shares them.

The request's own write transactions mark the key COMMITTED just before they commit
(`kit.db.before_commit`), in the same transaction as the work. So if the process dies
after the work committed but before the answer was stored, a retry is told so (409,
"carried out, answer lost") instead of doing the work a second time.

Responses that say nothing about the work (5xx, 401, 429) are not stored: the claim is
dropped, unless the work committed, and a retry with the key runs the request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from intently.gate.tables import idempotency_keys as t
from intently.kit.db import write_tx

KEY_MAX = 255
COMMITTED = 0  # the status of a claim whose work committed and whose answer is not stored yet
Verdict = Literal["run", "replay", "mismatch", "busy", "lost"]


@dataclass(frozen=True, slots=True)
class Stored:
    status: int
    content_type: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    verdict: Verdict
    stored: Stored | None = None


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
    engine: Engine, ws: int, key: str, fp: str, *, now: int, ttl_us: int, stale_us: int
) -> Claim:
    """Claim `key` for a request with fingerprint `fp`, or say what to answer instead."""
    try:
        return _claim(engine, ws, key, fp, now=now, ttl_us=ttl_us, stale_us=stale_us)
    except IntegrityError:
        # Another process inserted the same new key between our read and our insert (on
        # PostgreSQL; SQLite's write transactions are serial): its row decides now.
        return _claim(engine, ws, key, fp, now=now, ttl_us=ttl_us, stale_us=stale_us)


def _claim(
    engine: Engine, ws: int, key: str, fp: str, *, now: int, ttl_us: int, stale_us: int
) -> Claim:
    with write_tx(engine) as conn:
        row = _row(conn, ws, key)
        if row is None:
            conn.execute(
                insert(t).values(
                    workspace_id=ws,
                    key=key,
                    fingerprint=fp,
                    created_at=now,
                    claimed_until=now + stale_us,
                )
            )
            return Claim("run")
        old_fp, status, ctype, body, created, claimed_until = row
        if created <= now - ttl_us:
            _take_over(conn, ws, key, fp, now, stale_us)  # expired: a new key as far as we know
            return Claim("run")
        if old_fp != fp:
            return Claim("mismatch")
        if status is not None and status != COMMITTED:
            return Claim("replay", Stored(int(status), ctype, bytes(body or b"")))
        if claimed_until > now:
            return Claim("busy")
        if status == COMMITTED:
            return Claim("lost")  # its process died after the work, before the answer
        _take_over(conn, ws, key, fp, now, stale_us)  # its process died mid-request
        return Claim("run")


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


def complete(
    engine: Engine, ws: int, key: str, fp: str, status: int, content_type: str | None, body: bytes
) -> None:
    """Store the response of the request that holds the claim."""
    with write_tx(engine) as conn:
        conn.execute(
            update(t)
            .where(t.c.workspace_id == ws, t.c.key == key, t.c.fingerprint == fp)
            .where(_unanswered())
            .values(status=status, content_type=content_type, body=body)
        )


def _unanswered() -> Any:
    return or_(t.c.status.is_(None), t.c.status == COMMITTED)


def mark_committed(conn: Connection, ws: int, key: str, fp: str) -> None:
    """In the work's own transaction: the work of this claim is committed with it."""
    conn.execute(
        update(t)
        .where(t.c.workspace_id == ws, t.c.key == key, t.c.fingerprint == fp)
        .where(t.c.status.is_(None))
        .values(status=COMMITTED)
    )


def renew(engine: Engine, ws: int, key: str, fp: str, until: int) -> None:
    """Extend the claim of a request that is still running."""
    with write_tx(engine) as conn:
        conn.execute(
            update(t)
            .where(t.c.workspace_id == ws, t.c.key == key, t.c.fingerprint == fp)
            .where(_unanswered())
            .values(claimed_until=until)
        )


def release(engine: Engine, ws: int, key: str, fp: str) -> None:
    """Drop an unanswered claim, so that a retry runs the request; but a claim whose work
    committed stays, lapsed at once, so that a retry is told the work was done."""
    with write_tx(engine) as conn:
        mine = and_(t.c.workspace_id == ws, t.c.key == key, t.c.fingerprint == fp)
        conn.execute(delete(t).where(mine, t.c.status.is_(None)))
        conn.execute(update(t).where(mine, t.c.status == COMMITTED).values(claimed_until=0))


def sweep(engine: Engine, *, now: int, ttl_us: int) -> int:
    """Delete the keys older than the time they are kept; returns how many."""
    with write_tx(engine) as conn:
        return int(conn.execute(delete(t).where(t.c.created_at <= now - ttl_us)).rowcount or 0)
