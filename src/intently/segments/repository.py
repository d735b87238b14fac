"""Queries for segments and their members."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection

from intently.segments.tables import segment_members as sm
from intently.segments.tables import segments as sg


def get(conn: Connection, ws: int, sid: str) -> dict[str, Any] | None:
    row = conn.execute(select(sg).where(sg.c.workspace_id == ws, sg.c.id == sid)).mappings().first()
    return dict(row) if row else None


def insert(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(sg.insert().values(**values))


def update_segment(conn: Connection, ws: int, sid: str, values: dict[str, Any]) -> None:
    conn.execute(update(sg).where(sg.c.workspace_id == ws, sg.c.id == sid).values(**values))


def member_count(conn: Connection, ws: int, sid: str) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(sm)
            .where(sm.c.workspace_id == ws, sm.c.segment_id == sid)
        ).scalar_one()
    )


def page(
    conn: Connection, ws: int, *, after: str, limit: int, types: list[str], statuses: list[str]
) -> list[Any]:
    return list(
        conn.execute(
            select(sg.c.id, sg.c.name, sg.c.status, sg.c.type)
            .where(
                sg.c.workspace_id == ws,
                sg.c.id > after,
                sg.c.type.in_(types),
                sg.c.status.in_(statuses),
            )
            .order_by(sg.c.id)
            .limit(limit + 1)
        )
    )


def members_among(conn: Connection, ws: int, sid: str, ids: Iterable[str]) -> set[str]:
    wanted = list(set(ids))
    if not wanted:
        return set()
    return set(
        conn.execute(
            select(sm.c.account_id).where(
                sm.c.workspace_id == ws, sm.c.segment_id == sid, sm.c.account_id.in_(wanted)
            )
        ).scalars()
    )


def add(conn: Connection, ws: int, sid: str, ids: list[str], now: int) -> None:
    if ids:
        conn.execute(
            sm.insert(),
            [
                {"workspace_id": ws, "segment_id": sid, "account_id": aid, "added_at": now}
                for aid in ids
            ],
        )


def remove(conn: Connection, ws: int, sid: str, ids: list[str]) -> None:
    if ids:
        conn.execute(
            delete(sm).where(
                sm.c.workspace_id == ws, sm.c.segment_id == sid, sm.c.account_id.in_(ids)
            )
        )
