"""Accounts' stages in the database: placing them, their changes, daily notes, the stage
list's versions, and the read-only aggregates of the journey page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import RowMapping, case, func, insert, select
from sqlalchemy.engine import Connection

from intently.accounts.tables import accounts as a
from intently.kit.db import param_marker
from intently.kit.timefmt import format_ms
from intently.stages.tables import journey_days as jd
from intently.stages.tables import stage_changes as sc
from intently.stages.tables import stage_sets


def latest_stage_set(conn: Connection, ws: int) -> tuple[int, dict[str, Any]] | None:
    """(version, definition) of the newest saved stage list, or None."""
    row = conn.execute(
        select(stage_sets.c.version, stage_sets.c.definition)
        .where(stage_sets.c.workspace_id == ws)
        .order_by(stage_sets.c.version.desc())
        .limit(1)
    ).first()
    return None if row is None else (int(row[0]), dict(row[1]))


def insert_stage_set(
    conn: Connection, ws: int, version: int, definition: dict[str, Any], now: int
) -> None:
    conn.execute(
        insert(stage_sets),
        {"workspace_id": ws, "version": version, "definition": definition, "created_at": now},
    )


def account_exists(conn: Connection, ws: int, aid: str) -> bool:
    return (
        conn.execute(select(a.c.id).where(a.c.workspace_id == ws, a.c.id == aid)).first()
        is not None
    )


def current_stages(conn: Connection, ws: int, account_ids: list[str]) -> dict[str, str | None]:
    """account id -> its stored stage."""
    rows = conn.execute(
        select(a.c.id, a.c.rtp_journey_stage).where(a.c.workspace_id == ws, a.c.id.in_(account_ids))
    ).all()
    return {r[0]: r[1] for r in rows}


def write_stages(conn: Connection, ws: int, moves: list[tuple[str, str]], stamp: int) -> None:
    """Set each (account id, stage), stamped with the change clock `stamp`.

    Plain tuples to the driver: a full run writes every account of the workspace here.
    rtp_last_account_date takes the clock value, as scoring writes it: changed_at ==
    rtp_last_account_date tells an incremental run that scoring made the last change."""
    m = param_marker(conn)
    conn.exec_driver_sql(
        f"UPDATE accounts SET rtp_journey_stage = {m}, rtp_last_account_date = {m}, "
        f"changed_at = {m} WHERE workspace_id = {m} AND id = {m}",
        [(stage, stamp, stamp, ws, aid) for aid, stage in moves],
    )


def insert_changes(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """stage_changes rows: (workspace, id, account, changed_at, from, to, rule, version,
    cause)."""
    m = param_marker(conn)
    conn.exec_driver_sql(
        "INSERT INTO stage_changes (workspace_id, id, account_id, changed_at, from_stage, "
        f"to_stage, rule, stage_set_version, cause) VALUES ({', '.join([m] * 9)})",
        list(rows),
    )


def changes_of(conn: Connection, ws: int, aid: str, limit: int) -> list[RowMapping]:
    """An account's newest stage changes, newest first."""
    return list(
        conn.execute(
            select(sc)
            .where(sc.c.workspace_id == ws, sc.c.account_id == aid)
            .order_by(sc.c.changed_at.desc(), sc.c.id.desc())
            .limit(limit)
        ).mappings()
    )


def note_days(conn: Connection, ws: int, account_ids: list[str], day: int) -> None:
    """Note the day's score and stage of these accounts (one row per account and day)."""
    rows = conn.execute(
        select(a.c.id, a.c.rtp_account_score, a.c.rtp_journey_stage).where(
            a.c.workspace_id == ws, a.c.id.in_(account_ids)
        )
    ).all()
    m = param_marker(conn)
    conn.exec_driver_sql(
        "INSERT INTO journey_days (workspace_id, account_id, day, score, stage) "
        f"VALUES ({m}, {m}, {m}, {m}, {m}) ON CONFLICT (workspace_id, account_id, day) "
        "DO UPDATE SET score = excluded.score, stage = excluded.stage",
        [(ws, r[0], day, float(r[1]), r[2]) for r in rows],
    )


def days_of(conn: Connection, ws: int, aid: str, since_day: int) -> list[tuple[Any, ...]]:
    """(day, score, stage) of an account from `since_day` on, oldest first."""
    rows = conn.execute(
        select(jd.c.day, jd.c.score, jd.c.stage)
        .where(jd.c.workspace_id == ws, jd.c.account_id == aid, jd.c.day >= since_day)
        .order_by(jd.c.day)
    ).all()
    return [tuple(r) for r in rows]


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


def last_change(conn: Connection, ws: int, aid: str) -> dict[str, Any] | None:
    """The account's newest stage change (its rule is what placed it), or None."""
    found = changes_of(conn, ws, aid, 1)
    if not found:
        return None
    r = found[0]
    return {"to": r["to_stage"], "rule": r["rule"], "changedAt": format_ms(r["changed_at"])}
