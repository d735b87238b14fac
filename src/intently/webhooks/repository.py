"""Queries for webhooks, their deliveries (the outbox) and the delivery attempts."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection

from intently.events.tables import events as ev
from intently.kit.db import param_marker
from intently.webhooks.tables import webhook_attempts as wa
from intently.webhooks.tables import webhook_deliveries as wd
from intently.webhooks.tables import webhooks as wh

# ---- webhooks ----------------------------------------------------------------------------


def get(conn: Connection, ws: int, wid: str, *, lock: bool = False) -> dict[str, Any] | None:
    """The webhook; `lock` holds its row until commit (writers lock the webhook first, then
    its deliveries, as the dispatcher's recorder does, so they never deadlock)."""
    q = select(wh).where(wh.c.workspace_id == ws, wh.c.id == wid)
    if lock:
        q = q.with_for_update()
    row = conn.execute(q).mappings().first()
    return dict(row) if row else None


def insert(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(wh.insert().values(**values))


def update_webhook(conn: Connection, ws: int, wid: str, values: dict[str, Any]) -> None:
    conn.execute(update(wh).where(wh.c.workspace_id == ws, wh.c.id == wid).values(**values))


def remove(conn: Connection, ws: int, wid: str) -> None:
    """The webhook with its deliveries and their attempts."""
    conn.execute(delete(wa).where(wa.c.workspace_id == ws, wa.c.webhook_id == wid))
    conn.execute(delete(wd).where(wd.c.workspace_id == ws, wd.c.webhook_id == wid))
    conn.execute(delete(wh).where(wh.c.workspace_id == ws, wh.c.id == wid))


def page(conn: Connection, ws: int, *, after: str, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(wh)
        .where(wh.c.workspace_id == ws, wh.c.id > after)
        .order_by(wh.c.id)
        .limit(limit + 1)
    ).mappings()
    return [dict(r) for r in rows]


def pending_due_now(conn: Connection, ws: int, wid: str, now: int) -> int:
    """Make the webhook's pending deliveries due now; returns how many."""
    result = conn.execute(
        update(wd)
        .where(wd.c.workspace_id == ws, wd.c.webhook_id == wid, wd.c.status == "pending")
        .values(next_attempt_at=now)
    )
    return int(result.rowcount or 0)


def delivery_counts(conn: Connection, ws: int, wid: str) -> dict[str, int]:
    rows = conn.execute(
        select(wd.c.status, func.count())
        .where(wd.c.workspace_id == ws, wd.c.webhook_id == wid)
        .group_by(wd.c.status)
    ).all()
    return {str(s): int(n) for s, n in rows}


# ---- deliveries and attempts ---------------------------------------------------------------


def deliveries_page(
    conn: Connection,
    ws: int,
    wid: str,
    *,
    before: str | None,
    limit: int,
    statuses: Sequence[str] | None,
) -> list[dict[str, Any]]:
    """Newest first (ids are time-ordered), with each event's type."""
    q = (
        select(wd, ev.c.type.label("event_type"))
        .select_from(
            wd.outerjoin(ev, (ev.c.workspace_id == wd.c.workspace_id) & (ev.c.id == wd.c.event_id))
        )
        .where(wd.c.workspace_id == ws, wd.c.webhook_id == wid)
    )
    if before is not None:
        q = q.where(wd.c.id < before)
    if statuses:
        q = q.where(wd.c.status.in_(list(statuses)))
    rows = conn.execute(q.order_by(wd.c.id.desc()).limit(limit + 1)).mappings()
    return [dict(r) for r in rows]


def get_delivery(conn: Connection, ws: int, wid: str, did: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(wd, ev.c.type.label("event_type"))
            .select_from(
                wd.outerjoin(
                    ev, (ev.c.workspace_id == wd.c.workspace_id) & (ev.c.id == wd.c.event_id)
                )
            )
            .where(wd.c.workspace_id == ws, wd.c.webhook_id == wid, wd.c.id == did)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def attempts_of(conn: Connection, ws: int, delivery_ids: Sequence[str]) -> dict[str, list[Any]]:
    """Each delivery's attempts, oldest first."""
    out: dict[str, list[Any]] = {did: [] for did in delivery_ids}
    if not delivery_ids:
        return out
    rows = conn.execute(
        select(wa)
        .where(wa.c.workspace_id == ws, wa.c.delivery_id.in_(list(delivery_ids)))
        .order_by(wa.c.delivery_id, wa.c.id)
    )
    for r in rows:
        out[r.delivery_id].append(r)
    return out


def retry_failed(conn: Connection, ws: int, wid: str, did: str, now: int) -> int:
    """A failed delivery pending again with a fresh set of tries; returns rows changed."""
    result = conn.execute(
        update(wd)
        .where(
            wd.c.workspace_id == ws,
            wd.c.webhook_id == wid,
            wd.c.id == did,
            wd.c.status == "failed",
        )
        .values(status="pending", attempts=0, next_attempt_at=now, locked_until=None)
    )
    return int(result.rowcount or 0)


# ---- the dispatcher's queue --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a dispatcher holds until `token` (its locked_until)."""

    workspace_id: int
    id: str
    webhook_id: str
    event_id: str
    attempts: int
    token: int


_DUE = (
    "d.status = 'pending' AND d.next_attempt_at <= {m} "
    "AND (d.locked_until IS NULL OR d.locked_until <= {m}) AND w.status = 'active'"
)


def claim(
    conn: Connection,
    now: int,
    until: int,
    limit: int,
    ws: int | None,
    skip: Collection[tuple[int, str]] = (),
) -> list[Claimed]:
    """Take up to `limit` due deliveries of active webhooks, oldest due first, marking them
    locked until `until`, passing over the webhooks in `skip` (workspace, webhook id).
    Concurrent dispatchers never take the same row."""
    m = param_marker(conn)
    where = _DUE.format(m=m)
    params: list[Any] = [now, now]
    if ws is not None:
        where += f" AND d.workspace_id = {m}"
        params.append(ws)
    for skip_ws, skip_id in sorted(skip):  # a few: the webhooks at their concurrency cap
        where += f" AND NOT (d.workspace_id = {m} AND d.webhook_id = {m})"
        params += [skip_ws, skip_id]
    join = "JOIN webhooks w ON w.workspace_id = d.workspace_id AND w.id = d.webhook_id"
    if conn.dialect.name == "sqlite":
        # One statement inside the caller's BEGIN IMMEDIATE: the write lock is the claim.
        sql = (
            f"UPDATE webhook_deliveries SET locked_until = {m} WHERE rowid IN ("
            f"SELECT d.rowid FROM webhook_deliveries d {join} WHERE {where} "
            f"ORDER BY d.next_attempt_at LIMIT {m}) "
            "RETURNING workspace_id, id, webhook_id, event_id, attempts"
        )
        rows = conn.exec_driver_sql(sql, (until, *params, limit)).all()
    else:
        # SKIP LOCKED: a concurrent claimer passes over rows another one is taking.
        sql = (
            f"WITH due AS (SELECT d.workspace_id, d.id FROM webhook_deliveries d {join} "
            f"WHERE {where} ORDER BY d.next_attempt_at LIMIT {m} FOR UPDATE OF d SKIP LOCKED) "
            f"UPDATE webhook_deliveries x SET locked_until = {m} FROM due "
            "WHERE x.workspace_id = due.workspace_id AND x.id = due.id "
            "RETURNING x.workspace_id, x.id, x.webhook_id, x.event_id, x.attempts"
        )
        rows = conn.exec_driver_sql(sql, (*params, limit, until)).all()
    return [Claimed(int(r[0]), r[1], r[2], r[3], int(r[4]), until) for r in rows]


# A claimed delivery (bound as w, i, token) that no one else has claimed since: still
# pending, and locked with this claim's token.
_CLAIM_HOLDS = (
    wd.c.workspace_id == bindparam("w"),
    wd.c.id == bindparam("i"),
    wd.c.status == "pending",
    wd.c.locked_until == bindparam("token"),
)


def release(conn: Connection, claimed: Sequence[Claimed]) -> None:
    """Give claimed deliveries back, due as they were, where the claim still holds."""
    if not claimed:
        return
    conn.execute(
        update(wd).where(*_CLAIM_HOLDS).values(locked_until=None),
        [{"w": d.workspace_id, "i": d.id, "token": d.token} for d in claimed],
    )


def _by_workspace(keys: set[tuple[int, str]]) -> dict[int, list[str]]:
    """(workspace, id) keys as the ids of each workspace: one query per workspace."""
    by_ws: dict[int, list[str]] = {}
    for ws, key in keys:
        by_ws.setdefault(ws, []).append(key)
    return by_ws


def events_by_key(conn: Connection, keys: set[tuple[int, str]]) -> dict[tuple[int, str], Any]:
    out: dict[tuple[int, str], Any] = {}
    by_ws = _by_workspace(keys)
    for ws, ids in by_ws.items():
        for r in conn.execute(select(ev).where(ev.c.workspace_id == ws, ev.c.id.in_(ids))):
            out[(ws, r.id)] = r
    return out


def webhooks_by_key(
    conn: Connection, keys: set[tuple[int, str]]
) -> dict[tuple[int, str], dict[str, Any]]:
    out: dict[tuple[int, str], dict[str, Any]] = {}
    by_ws = _by_workspace(keys)
    for ws, ids in by_ws.items():
        rows = conn.execute(
            select(wh.c.workspace_id, wh.c.id, wh.c.url, wh.c.secret).where(
                wh.c.workspace_id == ws, wh.c.id.in_(ids)
            )
        ).mappings()
        for r in rows:
            out[(ws, r["id"])] = dict(r)
    return out


def add_attempts(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(wa.insert(), rows)


def mark_delivered(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Deliveries whose claim still holds, delivered. Rows: w, i, token, attempts, at, code."""
    if not rows:
        return
    conn.execute(
        update(wd)
        .where(*_CLAIM_HOLDS)
        .values(
            status="delivered",
            attempts=bindparam("n"),
            delivered_at=bindparam("at"),
            locked_until=None,
            last_status_code=bindparam("code"),
            last_error=None,
        ),
        rows,
    )


def hooks_state(
    conn: Connection, keys: set[tuple[int, str]]
) -> dict[tuple[int, str], dict[str, Any]]:
    """Status and failure bookkeeping of the given webhooks."""
    out: dict[tuple[int, str], dict[str, Any]] = {}
    by_ws = _by_workspace(keys)
    cols = (
        wh.c.id,
        wh.c.status,
        wh.c.consecutive_failures,
        wh.c.last_success_at,
        wh.c.last_failure_at,
    )
    # Locked in key order, so two recorders (or a recorder and an API write) queue rather
    # than deadlock, and failure counts are never lost to a concurrent update.
    for ws in sorted(by_ws):
        q = (
            select(*cols)
            .where(wh.c.workspace_id == ws, wh.c.id.in_(by_ws[ws]))
            .order_by(wh.c.id)
            .with_for_update()
        )
        for r in conn.execute(q):
            out[(ws, r.id)] = dict(r._mapping)
    return out


def finish_delivery(conn: Connection, d: Claimed, values: dict[str, Any]) -> bool:
    """Apply a result if the claim still holds (no one took the row after its lease ran
    out); returns whether it did."""
    result = conn.execute(
        update(wd)
        .where(
            wd.c.workspace_id == d.workspace_id,
            wd.c.id == d.id,
            wd.c.status == "pending",
            wd.c.locked_until == d.token,
        )
        .values(**values)
    )
    return bool(result.rowcount)


def first_attempt_at(conn: Connection, ws: int, did: str) -> int | None:
    value = conn.execute(
        select(func.min(wa.c.at)).where(wa.c.workspace_id == ws, wa.c.delivery_id == did)
    ).scalar()
    return None if value is None else int(value)


def count_pending_due(conn: Connection, now: int, ws: int | None) -> int:
    """Due deliveries of active webhooks that no one holds (for `intently webhooks deliver`)."""
    m = param_marker(conn)
    where = _DUE.format(m=m)
    params: list[Any] = [now, now]
    if ws is not None:
        where += f" AND d.workspace_id = {m}"
        params.append(ws)
    sql = (
        "SELECT count(*) FROM webhook_deliveries d JOIN webhooks w "
        f"ON w.workspace_id = d.workspace_id AND w.id = d.webhook_id WHERE {where}"
    )
    return int(conn.exec_driver_sql(sql, tuple(params)).scalar_one())
