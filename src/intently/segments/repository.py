"""Queries for segments and their members."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from intently.accounts import repository as accounts_repo
from intently.accounts.tables import accounts as a
from intently.events.repository import record as record_events
from intently.events.schemas import Event
from intently.kit.timefmt import now_us
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


# ---- dynamic membership ------------------------------------------------------------------------

# Which accounts a membership query looks at: an id range (lo, hi] of the workspace, or
# a list of ids.
Scope = tuple[str, str] | list[str]


def _scoped(col: Any, scope: Scope) -> ColumnElement[bool]:
    if isinstance(scope, tuple):
        lo, hi = scope
        return and_(col > lo, col <= hi)
    return col.in_(scope)


def entering(
    conn: Connection, ws: int, sid: str, cond: ColumnElement[bool], scope: Scope
) -> list[str]:
    """Accounts in scope that satisfy `cond` and are not yet members."""
    member = exists().where(
        sm.c.workspace_id == ws, sm.c.segment_id == sid, sm.c.account_id == a.c.id
    )
    q = select(a.c.id).where(a.c.workspace_id == ws, _scoped(a.c.id, scope), ~member, cond)
    return list(conn.execute(q).scalars())


def exiting(
    conn: Connection, ws: int, sid: str, cond: ColumnElement[bool], scope: Scope
) -> list[str]:
    """Members in scope whose account no longer satisfies `cond` (or no longer exists)."""
    still = exists().where(a.c.workspace_id == ws, a.c.id == sm.c.account_id, cond)
    q = select(sm.c.account_id).where(
        sm.c.workspace_id == ws,
        sm.c.segment_id == sid,
        _scoped(sm.c.account_id, scope),
        ~still,
    )
    return list(conn.execute(q).scalars())


def account_count(conn: Connection, ws: int) -> int:
    return int(
        conn.execute(select(func.count()).select_from(a).where(a.c.workspace_id == ws)).scalar_one()
    )


def matching_all(conn: Connection, ws: int, cond: ColumnElement[bool]) -> list[str]:
    """Every account of the workspace that satisfies `cond`."""
    return list(conn.execute(select(a.c.id).where(a.c.workspace_id == ws, cond)).scalars())


def member_ids(conn: Connection, ws: int, sid: str) -> list[str]:
    return list(
        conn.execute(
            select(sm.c.account_id)
            .where(sm.c.workspace_id == ws, sm.c.segment_id == sid)
            .order_by(sm.c.account_id)
        ).scalars()
    )


def clear(conn: Connection, ws: int, sid: str) -> None:
    conn.execute(delete(sm).where(sm.c.workspace_id == ws, sm.c.segment_id == sid))


def live_dynamic(conn: Connection, ws: int) -> list[dict[str, Any]]:
    """The workspace's dynamic segments that keep membership (draft and active)."""
    rows = conn.execute(
        select(sg)
        .where(
            sg.c.workspace_id == ws, sg.c.type == "dynamic", sg.c.status.in_(("draft", "active"))
        )
        .order_by(sg.c.id)
    ).mappings()
    return [dict(r) for r in rows]


def matching(
    conn: Connection, ws: int, cond: ColumnElement[bool], sample: int
) -> tuple[int, list[str]]:
    """(how many accounts satisfy `cond`, the first `sample` of them by id)."""
    count = conn.execute(
        select(func.count()).select_from(a).where(a.c.workspace_id == ws, cond)
    ).scalar_one()
    ids: list[str] = []
    if sample:
        ids = list(
            conn.execute(
                select(a.c.id).where(a.c.workspace_id == ws, cond).order_by(a.c.id).limit(sample)
            ).scalars()
        )
    return int(count), ids


def all_with_counts(conn: Connection, ws: int) -> list[tuple[dict[str, Any], int]]:
    counts: dict[str, int] = dict(
        conn.execute(
            select(sm.c.segment_id, func.count())
            .where(sm.c.workspace_id == ws)
            .group_by(sm.c.segment_id)
        ).all()
    )
    rows = conn.execute(select(sg).where(sg.c.workspace_id == ws).order_by(sg.c.id)).mappings()
    return [(dict(r), int(counts.get(r["id"], 0))) for r in rows]


# ---- membership writes shared by the segment service, refreshes and account pushes ----------


def membership_events(seg: dict[str, Any], ins: list[str], outs: list[str]) -> list[Event]:
    about = {"segment": {"segmentId": seg["id"], "name": seg["name"], "type": seg["type"]}}
    member, outside = {"member": True}, {"member": False}  # shared: encoded once
    return [Event("segment.entered", aid, outside, member, about) for aid in ins] + [
        Event("segment.exited", aid, member, outside, about) for aid in outs
    ]


def add_members(conn: Connection, ws: int, seg: dict[str, Any], ids: list[str], clock: int) -> int:
    """Add accounts (rtp_aids) to a segment; returns how many were new members."""
    unique = list(dict.fromkeys(ids))
    already = members_among(conn, ws, seg["id"], unique)
    new = [aid for aid in unique if aid not in already]
    add(conn, ws, seg["id"], new, now_us())
    if seg["status"] == "active":
        accounts_repo.touch(conn, ws, new, clock)
        record_events(conn, ws, membership_events(seg, new, []), seq=clock)
    return len(new)
