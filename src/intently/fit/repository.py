"""Fit's queries: the versioned models, and the accounts a dry run reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from intently.catalog import ACCOUNT_SCORE, FIT_SCORE, GRADE
from intently.fit.tables import fit_models
from intently.kit.db import fetch_all, json_value, lock_workspace, param_marker


def latest_model(conn: Connection, ws: int) -> tuple[int, dict[str, Any], int] | None:
    """(version, model, created_at) of the newest fit model, or None."""
    row = conn.execute(
        select(fit_models.c.version, fit_models.c.model, fit_models.c.created_at)
        .where(fit_models.c.workspace_id == ws)
        .order_by(fit_models.c.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return int(row[0]), json_value(row[1]), int(row[2])


def insert_model(conn: Connection, ws: int, model: dict[str, Any], now: int) -> int:
    """Store `model` as the next version (serialised with the workspace's other writers)."""
    lock_workspace(conn, ws)
    current = conn.execute(
        select(func.max(fit_models.c.version)).where(fit_models.c.workspace_id == ws)
    ).scalar()
    version = int(current or 0) + 1
    conn.execute(
        insert(fit_models).values(workspace_id=ws, version=version, model=model, created_at=now)
    )
    return version


def account_batch(
    conn: Connection, ws: int, after: str, limit: int, columns: Sequence[str]
) -> list[tuple[Any, ...]]:
    """(id, account score, fit score, grade, *columns) of the next `limit` accounts after
    `after`, in id order (columns: names of accounts columns, from the rule language)."""
    m = param_marker(conn)
    cols = ", ".join((ACCOUNT_SCORE, FIT_SCORE, GRADE, *columns))
    return fetch_all(
        conn,
        f"SELECT id, {cols} FROM accounts WHERE workspace_id = {m} AND id > {m} "
        f"ORDER BY id LIMIT {m}",
        (ws, after, limit),
    )


def account_values(
    conn: Connection, ws: int, aid: str, columns: Sequence[str]
) -> tuple[Any, ...] | None:
    """One account's (fit score, grade, *columns), or None."""
    m = param_marker(conn)
    cols = ", ".join((FIT_SCORE, GRADE, *columns))
    rows = fetch_all(
        conn, f"SELECT {cols} FROM accounts WHERE workspace_id = {m} AND id = {m}", (ws, aid)
    )
    return tuple(rows[0]) if rows else None
