"""Queries for deals and their account associations."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.engine import Connection

from intently.accounts.tables import accounts as a
from intently.deals.tables import deal_accounts as da
from intently.deals.tables import deals as d

FIELDS = (
    "name",
    "amount",
    "stage_id",
    "stage_label",
    "pipeline_id",
    "pipeline_label",
    "start_date",
    "closed_date",
    "owner_name",
    "owner_email",
    "owner_id",
    "currency_code",
)


def ids_by_external(conn: Connection, ws: int, ext_ids: Iterable[str]) -> dict[str, str]:
    wanted = list(set(ext_ids))
    if not wanted:
        return {}
    rows = conn.execute(
        select(d.c.external_deal_id, d.c.id).where(
            d.c.workspace_id == ws, d.c.external_deal_id.in_(wanted)
        )
    )
    return {r[0]: r[1] for r in rows}


def insert_many(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(d.insert(), rows)


def update_many(conn: Connection, ws: int, rows: list[dict[str, Any]], now: int) -> None:
    if not rows:
        return
    stmt = (
        update(d)
        .where(d.c.workspace_id == bindparam("ws"), d.c.id == bindparam("did"))
        .values({f: bindparam("v_" + f) for f in FIELDS} | {"updated_at": bindparam("v_now")})
    )
    conn.execute(
        stmt,
        [{"ws": ws, "did": r["id"], "v_now": now} | {"v_" + f: r[f] for f in FIELDS} for r in rows],
    )


def replace_associations(
    conn: Connection, ws: int, deal_ids: list[str], rows: list[dict[str, Any]]
) -> None:
    if deal_ids:
        conn.execute(delete(da).where(da.c.workspace_id == ws, da.c.deal_id.in_(deal_ids)))
    if rows:
        conn.execute(da.insert(), rows)


def deals_of_account(conn: Connection, ws: int, aid: str) -> list[dict[str, Any]]:
    """Deals linked to an account: by an association's externalId, else its domain."""
    acc = conn.execute(
        select(a.c.domain, a.c.external_id).where(a.c.workspace_id == ws, a.c.id == aid)
    ).first()
    if acc is None:
        return []
    domain, ext = acc
    # An association names its account by externalId first; only one without a
    # matching externalId falls back to its domain.
    by_ext = da.c.external_id == ext if ext is not None else None
    ext_matches_any = (
        select(a.c.id).where(a.c.workspace_id == ws, a.c.external_id == da.c.external_id).exists()
    )
    by_domain = and_(da.c.domain == domain, or_(da.c.external_id.is_(None), ~ext_matches_any))
    cond = or_(by_ext, by_domain) if by_ext is not None else by_domain
    linked = select(da.c.deal_id).where(da.c.workspace_id == ws, cond)
    rows = conn.execute(
        select(d).where(d.c.workspace_id == ws, d.c.id.in_(linked)).order_by(d.c.id)
    ).mappings()
    return [dict(r) for r in rows]
