"""Read-only aggregates over accounts' stages and their stage changes (the journey page)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection

from intently.accounts.tables import accounts as a
from intently.stages.tables import stage_changes as sc


def stage_counts(conn: Connection, ws: int) -> dict[str | None, int]:
    """Accounts per stage now (None: never placed), one GROUP BY over the workspace.

    ix_accounts_workspace_id_stage is (workspace_id, rtp_journey_stage, id), so the count
    reads that index alone, in stage order, without sorting or touching rows."""
    rows = conn.execute(
        select(a.c.rtp_journey_stage, func.count())
        .where(a.c.workspace_id == ws)
        .group_by(a.c.rtp_journey_stage)
    ).all()
    return {r[0]: int(r[1]) for r in rows}


def id_floor(us: int) -> str:
    """The smallest id made at or after `us` (ids start with their millisecond: kit/ids)."""
    return f"{max(0, us) // 1000:012x}{0:012x}"


def stage_moves(
    conn: Connection, ws: int, since_us: int, recent_us: int
) -> list[tuple[str | None, str, int, int]]:
    """(from stage, to stage, changes since `since_us`, changes since `recent_us`) per pair.

    stage_changes has no index on (workspace_id, changed_at); its ids are time-ordered
    and made no earlier than the `changed_at` of their row (stages/service.py takes the
    time first), so `id >= id_floor(since)` narrows the scan to a range of the primary
    key, and `changed_at` then selects exactly."""
    recent = func.sum(case((sc.c.changed_at >= recent_us, 1), else_=0))
    rows = conn.execute(
        select(sc.c.from_stage, sc.c.to_stage, func.count(), recent)
        .where(
            sc.c.workspace_id == ws,
            sc.c.id >= id_floor(since_us),
            sc.c.changed_at >= since_us,
        )
        .group_by(sc.c.from_stage, sc.c.to_stage)
    ).all()
    out: list[Any] = [(r[0], r[1], int(r[2]), int(r[3] or 0)) for r in rows]
    return out
