"""Events in the database: appending them (with their webhook deliveries) in the caller's
transaction, reading them back, and the workspace's score thresholds.

`record` appends in the caller's write transaction, stamped with that transaction's
change clock, and writes the outbox rows of every webhook subscribed to the types, so
an event and its deliveries commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.engine import Connection

from intently.events.schemas import Event
from intently.events.tables import events as ev
from intently.events.tables import score_thresholds as st
from intently.kit.db import json_param, json_value, param_marker
from intently.kit.ids import new_id
from intently.kit.timefmt import now_us
from intently.webhooks.outbox import enqueue_deliveries


def record(conn: Connection, ws: int, items: Sequence[Event], *, seq: int) -> list[str]:
    """Append events in the caller's transaction; `seq` is its clock (`tick`). Returns ids."""
    if not items:
        return []
    now = now_us()
    ids = [new_id() for _ in items]
    m = param_marker(conn)
    encoded: dict[int, str] = {}  # a document shared by many events is encoded once

    def enc(doc: dict[str, Any] | None) -> str | None:
        if doc is None:
            return None
        key = id(doc)
        text = encoded.get(key)
        if text is None:
            text = encoded[key] = json_param(doc)
        return text

    conn.exec_driver_sql(
        "INSERT INTO events (workspace_id, id, seq, type, account_id, occurred_at, before, "
        f"after, data) VALUES ({', '.join([m] * 9)})",
        [
            (
                ws,
                eid,
                seq,
                e.type,
                e.account_id,
                now,
                enc(e.before),
                enc(e.after),
                enc(e.data),
            )
            for eid, e in zip(ids, items, strict=True)
        ],
    )
    enqueue_deliveries(conn, ws, [(eid, e.type) for eid, e in zip(ids, items, strict=True)], now)
    return ids


def page_after(
    conn: Connection,
    ws: int,
    *,
    after_seq: int,
    after_id: str,
    types: list[str] | None,
    since_us: int | None,
    account: str | None,
    limit: int,
) -> list[Row[Any]]:
    """Up to `limit` events after (seq, id), oldest first, filtered."""
    q = select(ev).where(ev.c.workspace_id == ws)
    q = q.where((ev.c.seq > after_seq) | ((ev.c.seq == after_seq) & (ev.c.id > after_id)))
    if types is not None:
        q = q.where(ev.c.type.in_(types))
    if since_us is not None:
        q = q.where(ev.c.occurred_at >= since_us)
    if account is not None:
        q = q.where(ev.c.account_id == account)
    return list(conn.execute(q.order_by(ev.c.seq, ev.c.id).limit(limit)).all())


def newest(
    conn: Connection, ws: int, *, types: list[str] | None, since_us: int | None, limit: int
) -> list[Row[Any]]:
    """The newest `limit` events (filtered), newest first."""
    q = select(ev).where(ev.c.workspace_id == ws)
    if types is not None:
        q = q.where(ev.c.type.in_(types))
    if since_us is not None:
        q = q.where(ev.c.occurred_at >= since_us)
    return list(conn.execute(q.order_by(ev.c.seq.desc(), ev.c.id.desc()).limit(limit)).all())


def get(conn: Connection, ws: int, event_id: str) -> Row[Any] | None:
    return conn.execute(select(ev).where(ev.c.workspace_id == ws, ev.c.id == event_id)).first()


# ---- score thresholds -------------------------------------------------------------------------


def thresholds(conn: Connection, ws: int) -> list[dict[str, Any]]:
    """The workspace's thresholds: [{"score": column, "value": number}], none by default."""
    row = conn.execute(select(st.c.thresholds).where(st.c.workspace_id == ws)).first()
    return list(json_value(row[0])) if row else []


def store_thresholds(conn: Connection, ws: int, items: list[dict[str, Any]], now: int) -> None:
    """Replace the workspace's thresholds (the caller holds the workspace lock)."""
    found = conn.execute(select(st.c.workspace_id).where(st.c.workspace_id == ws)).first()
    if found:
        conn.execute(
            st.update().where(st.c.workspace_id == ws).values(thresholds=items, updated_at=now)
        )
    else:
        conn.execute(st.insert().values(workspace_id=ws, thresholds=items, updated_at=now))
