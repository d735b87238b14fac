"""Queries for accounts. Set-based: every bulk path is one statement for all its rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, exists, func, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from intently.accounts.tables import accounts as a
from intently.segments.tables import segment_members as sm
from intently.segments.tables import segments as sg

# What an account item shows, in one select list.
ITEM_COLUMNS = (
    a.c.id,
    a.c.external_id,
    a.c.name,
    a.c.domain,
    a.c.short_name,
    a.c.linkedin_url,
    a.c.tags,
    a.c.custom_fields,
    a.c.rtp_account_score,
    a.c.rtp_journey_stage,
    a.c.rtp_website_intent_score,
    a.c.rtp_bombora_intent_score,
    a.c.rtp_g2_intent_score,
    a.c.rtp_advertising_activity_score,
    a.c.rtp_last_account_date,
)

# Fields an upsert may change, as (column, request property).
WRITABLE = ("name", "external_id", "short_name", "linkedin_url", "tags", "custom_fields")


def by_domains(conn: Connection, ws: int, domains: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = list(set(domains))
    if not wanted:
        return {}
    rows = conn.execute(
        select(a.c.id, a.c.domain, *(a.c[c] for c in WRITABLE)).where(
            a.c.workspace_id == ws, a.c.domain.in_(wanted)
        )
    ).mappings()
    return {r["domain"]: dict(r) for r in rows}


def by_external_ids(
    conn: Connection, ws: int, ext_ids: Iterable[str]
) -> dict[str, tuple[str, str]]:
    """externalId -> (rtp_aid, domain) of the accounts that hold them."""
    wanted = list(set(ext_ids))
    if not wanted:
        return {}
    rows = conn.execute(
        select(a.c.external_id, a.c.id, a.c.domain).where(
            a.c.workspace_id == ws, a.c.external_id.in_(wanted)
        )
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def insert_many(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(a.insert(), rows)


_UPDATE = (
    update(a)
    .where(a.c.workspace_id == bindparam("ws"), a.c.id == bindparam("aid"))
    .values({c: bindparam("v_" + c) for c in WRITABLE} | {"changed_at": bindparam("v_changed_at")})
)


def update_many(conn: Connection, ws: int, rows: list[dict[str, Any]], clock: int) -> None:
    """Write the WRITABLE fields of each row (a dict with `id` and those fields)."""
    if not rows:
        return
    params = [
        {"ws": ws, "aid": r["id"], "v_changed_at": clock} | {"v_" + c: r[c] for c in WRITABLE}
        for r in rows
    ]
    conn.execute(_UPDATE, params)


def set_external_ids(
    conn: Connection, ws: int, pairs: list[tuple[str, str | None]], clock: int
) -> None:
    """Set external_id per (rtp_aid, value); callers clear before they set, for uniqueness."""
    if not pairs:
        return
    conn.execute(
        update(a)
        .where(a.c.workspace_id == bindparam("ws"), a.c.id == bindparam("aid"))
        .values(external_id=bindparam("ext"), changed_at=bindparam("clock")),
        [{"ws": ws, "aid": aid, "ext": ext, "clock": clock} for aid, ext in pairs],
    )


def touch(conn: Connection, ws: int, ids: Iterable[str], clock: int) -> None:
    """Mark accounts changed (their returned data changed through another table)."""
    params = [{"ws": ws, "aid": aid, "clock": clock} for aid in set(ids)]
    if params:
        conn.execute(
            update(a)
            .where(a.c.workspace_id == bindparam("ws"), a.c.id == bindparam("aid"))
            .values(changed_at=bindparam("clock")),
            params,
        )


def touch_segment_members(conn: Connection, ws: int, segment_id: str, clock: int) -> None:
    members = select(sm.c.account_id).where(sm.c.workspace_id == ws, sm.c.segment_id == segment_id)
    conn.execute(
        update(a).where(a.c.workspace_id == ws, a.c.id.in_(members)).values(changed_at=clock)
    )


def touch_with_custom_field(conn: Connection, ws: int, key: str, clock: int) -> None:
    """Mark changed every account holding a value for custom field `key`."""
    has_key: ColumnElement[bool]
    if conn.dialect.name == "sqlite":
        has_key = exists(
            text("SELECT 1 FROM json_each(accounts.custom_fields) WHERE json_each.key = :key")
        )
    else:
        has_key = func.jsonb_exists(a.c.custom_fields, text(":key"))
    conn.execute(
        update(a).where(a.c.workspace_id == ws, has_key).values(changed_at=clock),
        {"key": key},
    )


def get_item(conn: Connection, ws: int, aid: str) -> Any:
    return conn.execute(select(*ITEM_COLUMNS).where(a.c.workspace_id == ws, a.c.id == aid)).first()


def get_by_external_id(conn: Connection, ws: int, ext: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(a.c.id, a.c.custom_fields).where(a.c.workspace_id == ws, a.c.external_id == ext)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def get_custom_fields(conn: Connection, ws: int, aid: str) -> dict[str, Any] | None:
    row = (
        conn.execute(select(a.c.id, a.c.custom_fields).where(a.c.workspace_id == ws, a.c.id == aid))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def set_custom_fields(
    conn: Connection, ws: int, aid: str, values: dict[str, Any], clock: int
) -> None:
    conn.execute(
        update(a)
        .where(a.c.workspace_id == ws, a.c.id == aid)
        .values(custom_fields=values, changed_at=clock)
    )


def page(
    conn: Connection,
    ws: int,
    *,
    after: str,
    limit: int,
    changed_after: int | None = None,
    domains: list[str] | None = None,
    segment_id: str | None = None,
) -> list[Any]:
    """One keyset page in rtp_aid order (limit + 1 rows tells whether a next page exists)."""
    q = select(*ITEM_COLUMNS).where(a.c.workspace_id == ws, a.c.id > after)
    if changed_after is not None:
        q = q.where(a.c.changed_at > changed_after)
    if domains is not None:
        q = q.where(a.c.domain.in_(domains))
    if segment_id is not None:
        q = q.where(
            a.c.id.in_(
                select(sm.c.account_id).where(
                    sm.c.workspace_id == ws, sm.c.segment_id == segment_id
                )
            )
        )
    return list(conn.execute(q.order_by(a.c.id).limit(limit + 1)))


def missing_external_ids(conn: Connection, ws: int, limit: int) -> list[Any]:
    return list(
        conn.execute(
            select(a.c.name, a.c.domain)
            .where(a.c.workspace_id == ws, a.c.external_id.is_(None))
            .order_by(a.c.id)
            .limit(limit)
        )
    )


def active_segments_of(
    conn: Connection, ws: int, ids: list[str]
) -> dict[str, list[dict[str, str]]]:
    """rtp_aid -> [{segmentId, name}] of the active segments holding it."""
    out: dict[str, list[dict[str, str]]] = {}
    if not ids:
        return out
    rows = conn.execute(
        select(sm.c.account_id, sg.c.id, sg.c.name)
        .join(sg, (sg.c.workspace_id == sm.c.workspace_id) & (sg.c.id == sm.c.segment_id))
        .where(sm.c.workspace_id == ws, sm.c.account_id.in_(ids), sg.c.status == "active")
        .order_by(sm.c.account_id, sg.c.id)
    )
    for aid, sid, name in rows:
        out.setdefault(aid, []).append({"segmentId": sid, "name": name})
    return out


def ids_by_domains(conn: Connection, ws: int, domains: Iterable[str]) -> dict[str, str]:
    wanted = list(set(domains))
    if not wanted:
        return {}
    rows = conn.execute(
        select(a.c.domain, a.c.id).where(a.c.workspace_id == ws, a.c.domain.in_(wanted))
    )
    return {r[0]: r[1] for r in rows}


def existing_ids(conn: Connection, ws: int, ids: Iterable[str]) -> set[str]:
    wanted = list(set(ids))
    if not wanted:
        return set()
    return set(
        conn.execute(select(a.c.id).where(a.c.workspace_id == ws, a.c.id.in_(wanted))).scalars()
    )
