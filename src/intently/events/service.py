"""Recording change events (with their webhook deliveries) and reading them back.

`record` appends in the caller's write transaction, stamped with that transaction's
change clock, and writes the outbox rows of every webhook subscribed to the types, so
an event and its deliveries commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from intently.events.tables import events as ev
from intently.events.tables import score_thresholds as st
from intently.kit.db import (
    json_param,
    json_value,
    lock_workspace,
    param_marker,
    read_clock,
    read_tx,
    write_tx,
)
from intently.kit.errors import BadRequest, NotFound, validation_error
from intently.kit.ids import is_id, new_id
from intently.kit.pagination import Cursor, CursorCodec, page
from intently.kit.timefmt import format_ms, format_us, now_us, parse_iso8601
from intently.webhooks.outbox import enqueue_deliveries

EVENT_TYPES = (
    "account.created",
    "segment.entered",
    "segment.exited",
    "stage.changed",
    "score.threshold_crossed",
)


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    account_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    data: dict[str, Any] | None = None


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


def public(row: Any) -> dict[str, Any]:
    """The event as the API and webhooks show it."""
    out: dict[str, Any] = {
        "eventId": row.id,
        "type": row.type,
        "occurredAt": format_ms(int(row.occurred_at)),
        "rtp_aid": row.account_id,
        "before": json_value(row.before),
        "after": json_value(row.after),
    }
    data = json_value(row.data)
    if data:
        out.update(data)
    return out


def _parse_types(raw: str | None) -> list[str] | None:
    if raw is None or not raw.strip():
        return None
    types = [t.strip() for t in raw.split(",") if t.strip()]
    for t in types:
        if t not in EVENT_TYPES:
            raise validation_error(
                "type", "type", "isIn", f"type must be one of {', '.join(EVENT_TYPES)}; got '{t}'"
            )
    return types


def _parse_since(since: str | None) -> int | None:
    if since is None:
        return None
    try:
        return parse_iso8601(since)
    except ValueError:
        raise validation_error(
            "since",
            "since",
            "isIso8601",
            f"since must be a valid ISO 8601 date string; got '{since}'",
        ) from None


def list_events(
    engine: Engine,
    codec: CursorCodec,
    ws: int,
    *,
    limit: int,
    cursor: str | None,
    type_filter: str | None,
    since: str | None,
    account: str | None,
) -> dict[str, Any]:
    """Events oldest first, keyset over (seq, id): a client that keeps the last page's
    cursor and comes back later sees every event committed since, exactly in order."""
    with read_tx(engine) as conn:
        if cursor is not None:
            c = codec.decode(cursor, "events", ws)
            seq_s, _, after_id = c.after.partition(":")
            after_seq = int(seq_s)
            types, since_us, account = c.filters["types"], c.filters["since"], c.filters["account"]
            sync_us = c.sync_us
        else:
            types = _parse_types(type_filter)
            since_us = _parse_since(since)
            if account is not None and not is_id(account):
                raise BadRequest("Invalid rtp_aid format")
            after_seq, after_id = -1, ""
            sync_us = read_clock(conn, ws)
        q = select(ev).where(ev.c.workspace_id == ws)
        q = q.where((ev.c.seq > after_seq) | ((ev.c.seq == after_seq) & (ev.c.id > after_id)))
        if types is not None:
            q = q.where(ev.c.type.in_(types))
        if since_us is not None:
            q = q.where(ev.c.occurred_at >= since_us)
        if account is not None:
            q = q.where(ev.c.account_id == account)
        rows = conn.execute(q.order_by(ev.c.seq, ev.c.id).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if rows:
        # The last page also carries a cursor: it is where the next poll starts.
        last = rows[-1]
        filters = {"types": types, "since": since_us, "account": account}
        next_cursor = codec.encode(Cursor("events", ws, f"{last.seq}:{last.id}", sync_us, filters))
    result = page([public(r) for r in rows], next_cursor if more else None, format_us(sync_us))
    result["pollCursor"] = next_cursor if rows else cursor
    return result


def get_event(engine: Engine, ws: int, event_id: str) -> dict[str, Any]:
    if not is_id(event_id):
        raise BadRequest("Invalid eventId format")
    with read_tx(engine) as conn:
        row = conn.execute(select(ev).where(ev.c.workspace_id == ws, ev.c.id == event_id)).first()
    if row is None:
        raise NotFound(f"Event '{event_id}' not found")
    return public(row)


# ---- score thresholds -------------------------------------------------------------------------


def thresholds(conn: Connection, ws: int) -> list[dict[str, Any]]:
    """The workspace's thresholds: [{"score": column, "value": number}], none by default."""
    row = conn.execute(select(st.c.thresholds).where(st.c.workspace_id == ws)).first()
    return list(json_value(row[0])) if row else []


def get_thresholds(engine: Engine, ws: int) -> dict[str, Any]:
    with read_tx(engine) as conn:
        return {"thresholds": thresholds(conn, ws)}


def put_thresholds(engine: Engine, ws: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    now = now_us()
    with write_tx(engine) as conn:
        # Two first PUTs must not both find no row and both insert it.
        lock_workspace(conn, ws)
        found = conn.execute(select(st.c.workspace_id).where(st.c.workspace_id == ws)).first()
        if found:
            conn.execute(
                st.update().where(st.c.workspace_id == ws).values(thresholds=items, updated_at=now)
            )
        else:
            conn.execute(st.insert().values(workspace_id=ws, thresholds=items, updated_at=now))
    return {"thresholds": items}


def crossings(
    thresholds_: Sequence[dict[str, Any]],
    account_id: str,
    old: dict[str, float],
    new: dict[str, float],
) -> list[Event]:
    """`score.threshold_crossed` events for one account whose scores went from old to new:
    up when old < value <= new, down when new < value <= old."""
    out: list[Event] = []
    for t in thresholds_:
        col, value = t["score"], float(t["value"])
        before, after = float(old.get(col, 0.0)), float(new.get(col, 0.0))
        if before < value <= after:
            direction = "up"
        elif after < value <= before:
            direction = "down"
        else:
            continue
        out.append(
            Event(
                "score.threshold_crossed",
                account_id,
                {"score": col, "value": before},
                {"score": col, "value": after},
                {"threshold": {"score": col, "value": value, "direction": direction}},
            )
        )
    return out


def recent(
    engine: Engine, ws: int, *, types: str | None, since: str | None, limit: int
) -> list[dict[str, Any]]:
    """The newest `limit` events (filtered), oldest first."""
    wanted = _parse_types(types)
    q = select(ev).where(ev.c.workspace_id == ws)
    if wanted is not None:
        q = q.where(ev.c.type.in_(wanted))
    since_us = _parse_since(since)
    if since_us is not None:
        q = q.where(ev.c.occurred_at >= since_us)
    with read_tx(engine) as conn:
        rows = conn.execute(q.order_by(ev.c.seq.desc(), ev.c.id.desc()).limit(limit)).all()
    return [public(r) for r in reversed(rows)]
