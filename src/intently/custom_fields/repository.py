"""Queries for custom field definitions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from intently.custom_fields.tables import custom_fields as cf
from intently.kit.db import fetch_all, param_marker


def active(conn: Connection, workspace_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(cf)
        .where(cf.c.workspace_id == workspace_id, cf.c.status == "active")
        .order_by(cf.c.created_at, cf.c.key)
    ).mappings()
    return [dict(r) for r in rows]


def active_keys(conn: Connection, workspace_id: int) -> list[str]:
    """Keys of the active fields, in creation order (read on every account page)."""
    m = param_marker(conn)
    sql = (
        f"SELECT key FROM custom_fields WHERE workspace_id = {m} AND status = 'active' "
        "ORDER BY created_at, key"
    )
    return [row[0] for row in fetch_all(conn, sql, (workspace_id,))]


def get(conn: Connection, workspace_id: int, key: str) -> dict[str, Any] | None:
    row = (
        conn.execute(select(cf).where(cf.c.workspace_id == workspace_id, cf.c.key == key))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def insert(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(cf.insert().values(**values))


def update_field(conn: Connection, workspace_id: int, key: str, values: dict[str, Any]) -> None:
    conn.execute(
        update(cf).where(cf.c.workspace_id == workspace_id, cf.c.key == key).values(**values)
    )
