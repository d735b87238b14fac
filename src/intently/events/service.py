"""Change events: the API's reading of them, score thresholds, and the crossings that
become `score.threshold_crossed` events. Recording is `events/repository.py`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine

from intently.events import repository as repo
from intently.events.present import public
from intently.events.schemas import EVENT_TYPES, Event
from intently.kit.db import lock_workspace, read_clock, read_tx, write_tx
from intently.kit.errors import NotFound, validation_error
from intently.kit.ids import check_aid, check_id
from intently.kit.pagination import Cursor, CursorCodec, page
from intently.kit.timefmt import format_us, now_us, parse_iso8601


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
            if account is not None:
                check_aid(account)
            after_seq, after_id = -1, ""
            sync_us = read_clock(conn, ws)
        rows = repo.page_after(
            conn, ws, after_seq=after_seq, after_id=after_id, types=types, since_us=since_us,
            account=account, limit=limit + 1,
        )  # fmt: skip
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
    check_id(event_id, "eventId")
    with read_tx(engine) as conn:
        row = repo.get(conn, ws, event_id)
    if row is None:
        raise NotFound(f"Event '{event_id}' not found")
    return public(row)


# ---- score thresholds -------------------------------------------------------------------------


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


def get_thresholds(engine: Engine, ws: int) -> dict[str, Any]:
    with read_tx(engine) as conn:
        return {"thresholds": repo.thresholds(conn, ws)}


def put_thresholds(engine: Engine, ws: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    now = now_us()
    with write_tx(engine) as conn:
        # Two first PUTs must not both find no row and both insert it.
        lock_workspace(conn, ws)
        repo.store_thresholds(conn, ws, items, now)
    return {"thresholds": items}


def recent(
    engine: Engine, ws: int, *, types: str | None, since: str | None, limit: int
) -> list[dict[str, Any]]:
    """The newest `limit` events (filtered), oldest first."""
    wanted = _parse_types(types)
    since_us = _parse_since(since)
    with read_tx(engine) as conn:
        rows = repo.newest(conn, ws, types=wanted, since_us=since_us, limit=limit)
    return [public(r) for r in reversed(rows)]
