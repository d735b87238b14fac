"""The outbox: deliveries written in the same transaction as the events they carry."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection

from intently.kit.db import param_marker
from intently.kit.ids import new_id
from intently.webhooks.tables import webhooks as wh

# The reason a webhook carries when its owner turned it off (not the dispatcher).
USER_DISABLED = "Disabled by a user"


def enqueue_deliveries(
    conn: Connection, ws: int, events: Sequence[tuple[str, str]], now: int
) -> int:
    """One pending delivery per (webhook subscribed to the type, event); `events` are
    (event id, type). Runs in the caller's transaction. Returns how many.

    A webhook the dispatcher disabled after failing still gets its deliveries queued (they
    wait, undelivered, until its owner re-enables it), so no event is lost to a receiver
    that was down for a while; one its owner turned off gets none."""
    if not events:
        return 0
    hooks = conn.execute(
        select(wh.c.id, wh.c.event_types).where(
            wh.c.workspace_id == ws,
            or_(
                wh.c.status == "active",
                and_(wh.c.status == "disabled", wh.c.disabled_reason != USER_DISABLED),
            ),
        )
    ).all()
    if not hooks:
        return 0
    rows: list[tuple[object, ...]] = []
    for hook_id, types in hooks:
        wanted = set(types or ())
        every = "*" in wanted
        rows.extend(
            (ws, new_id(), hook_id, event_id, "pending", 0, now, now)
            for event_id, typ in events
            if every or typ in wanted
        )
    if rows:
        m = param_marker(conn)
        conn.exec_driver_sql(
            "INSERT INTO webhook_deliveries (workspace_id, id, webhook_id, event_id, status, "
            f"attempts, next_attempt_at, created_at) VALUES ({', '.join([m] * 8)})",
            rows,
        )
    return len(rows)
