"""Queries for sales activities and contacts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from intently.accounts.tables import accounts as a
from intently.activities.tables import activities as act
from intently.activities.tables import activity_contacts as ac
from intently.activities.tables import contacts as ct

CONTACT_FIELDS = (
    "external_contact_id",
    "name",
    "title",
    "department",
    "seniority",
    "phone",
    "linkedin_url",
)


def existing_external_ids(conn: Connection, ws: int, ext_ids: Iterable[str]) -> set[str]:
    wanted = list(set(ext_ids))
    if not wanted:
        return set()
    return set(
        conn.execute(
            select(act.c.external_activity_id).where(
                act.c.workspace_id == ws, act.c.external_activity_id.in_(wanted)
            )
        ).scalars()
    )


def contacts_by_email(
    conn: Connection, ws: int, emails: Iterable[str]
) -> dict[str, dict[str, Any]]:
    wanted = list(set(emails))
    if not wanted:
        return {}
    rows = conn.execute(
        select(ct).where(ct.c.workspace_id == ws, ct.c.email.in_(wanted))
    ).mappings()
    return {r["email"]: dict(r) for r in rows}


def insert_contacts(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(ct.insert(), rows)


def update_contacts(conn: Connection, ws: int, rows: list[dict[str, Any]], now: int) -> None:
    if rows:
        conn.execute(
            update(ct)
            .where(ct.c.workspace_id == bindparam("ws"), ct.c.id == bindparam("cid"))
            .values(
                {f: bindparam("v_" + f) for f in CONTACT_FIELDS}
                | {"updated_at": bindparam("v_now")}
            ),
            [
                {"ws": ws, "cid": r["id"], "v_now": now} | {"v_" + f: r[f] for f in CONTACT_FIELDS}
                for r in rows
            ],
        )


def insert_activities(
    conn: Connection, rows: list[dict[str, Any]], links: list[dict[str, Any]]
) -> None:
    if rows:
        conn.execute(act.insert(), rows)
    if links:
        conn.execute(ac.insert(), links)


def activities_of_account(conn: Connection, ws: int, aid: str) -> list[dict[str, Any]]:
    domain = select(a.c.domain).where(a.c.workspace_id == ws, a.c.id == aid).scalar_subquery()
    rows = conn.execute(
        select(act)
        .where(act.c.workspace_id == ws, act.c.domain == domain)
        .order_by(act.c.occurred_at.desc(), act.c.id.desc())
        .limit(1000)
    ).mappings()
    out = [dict(r) for r in rows]
    if out:
        links = conn.execute(
            select(ac.c.activity_id, ct.c.email, ct.c.name)
            .join(ct, (ct.c.workspace_id == ac.c.workspace_id) & (ct.c.id == ac.c.contact_id))
            .where(ac.c.workspace_id == ws, ac.c.activity_id.in_([r["id"] for r in out]))
        )
        by_act: dict[str, list[dict[str, Any]]] = {}
        for act_id, email, name in links:
            by_act.setdefault(act_id, []).append({"email": email, "name": name})
        for r in out:
            r["contacts"] = by_act.get(r["id"], [])
    return out
