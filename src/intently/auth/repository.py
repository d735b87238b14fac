"""Queries for workspaces, users and API keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from intently.auth.tables import api_keys, users, workspaces
from intently.kit.db import fetch_all, param_marker
from intently.kit.ids import new_id
from intently.kit.timefmt import now_us


def workspace_id_by_name(conn: Connection, name: str) -> int | None:
    return conn.execute(select(workspaces.c.id).where(workspaces.c.name == name)).scalar()


def create_workspace(conn: Connection, name: str) -> int:
    now = now_us()
    return int(
        conn.execute(
            workspaces.insert()
            .values(name=name, api_access=True, change_clock=now, created_at=now)
            .returning(workspaces.c.id)
        ).scalar_one()
    )


def set_api_access(conn: Connection, workspace_id: int, enabled: bool) -> None:
    conn.execute(
        update(workspaces).where(workspaces.c.id == workspace_id).values(api_access=enabled)
    )


def user_id_by_email(conn: Connection, workspace_id: int, email: str) -> str | None:
    return conn.execute(
        select(users.c.id).where(users.c.workspace_id == workspace_id, users.c.email == email)
    ).scalar()


def create_user(conn: Connection, workspace_id: int, email: str) -> str:
    uid = new_id()
    conn.execute(
        users.insert().values(workspace_id=workspace_id, id=uid, email=email, created_at=now_us())
    )
    return uid


def lock_user(conn: Connection, workspace_id: int, user_id: str) -> None:
    """Hold the user's row until the transaction ends (PostgreSQL; SQLite's writes are
    serial already), so two key issues for one user run one after the other."""
    conn.execute(
        select(users.c.id)
        .where(users.c.workspace_id == workspace_id, users.c.id == user_id)
        .with_for_update()
    )


def revoke_user_keys(conn: Connection, workspace_id: int, user_id: str) -> None:
    conn.execute(
        update(api_keys)
        .where(
            api_keys.c.workspace_id == workspace_id,
            api_keys.c.user_id == user_id,
            api_keys.c.revoked_at.is_(None),
        )
        .values(revoked_at=now_us())
    )


def insert_key(
    conn: Connection, workspace_id: int, user_id: str, key_hash: str, prefix: str
) -> None:
    conn.execute(
        api_keys.insert().values(
            workspace_id=workspace_id,
            id=new_id(),
            user_id=user_id,
            key_hash=key_hash,
            prefix=prefix,
            created_at=now_us(),
        )
    )


@dataclass(frozen=True, slots=True)
class KeyRow:
    workspace_id: int
    key_id: str
    key_hash: str
    api_access: bool
    revoked_at: int | None
    # The workspace's own rate limit, NULL for the operator's default.
    rate_limit_per_minute: int | None
    rate_limit_burst: int | None


def key_lookup(conn: Connection, key_hash: str) -> KeyRow | None:
    """The key with this hash, with its workspace's API switch and rate limit.

    Runs on every API request: one hand-written query through the driver.
    """
    m = param_marker(conn)
    rows = fetch_all(
        conn,
        "SELECT k.workspace_id, k.id, k.key_hash, w.api_access, k.revoked_at, "
        "w.rate_limit_per_minute, w.rate_limit_burst FROM api_keys k "
        f"JOIN workspaces w ON w.id = k.workspace_id WHERE k.key_hash = {m}",
        (key_hash,),
    )
    if not rows:
        return None
    ws, kid, stored, access, revoked, per_minute, burst = rows[0]
    return KeyRow(int(ws), str(kid), str(stored), bool(access), revoked, per_minute, burst)


def api_access(conn: Connection, workspace_id: int) -> bool | None:
    """Whether the workspace's API access is on; None for an unknown workspace."""
    found = conn.execute(
        select(workspaces.c.api_access).where(workspaces.c.id == workspace_id)
    ).first()
    return None if found is None else bool(found[0])


def keys_page(
    conn: Connection, workspace_id: int, *, before: str | None, limit: int
) -> list[dict[str, Any]]:
    """Up to limit + 1 of the workspace's keys, newest first (ids are time-ordered), with
    their user's email; never the hash."""
    query = (
        select(
            api_keys.c.id,
            api_keys.c.user_id,
            users.c.email,
            api_keys.c.prefix,
            api_keys.c.created_at,
            api_keys.c.revoked_at,
        )
        .join(
            users,
            (users.c.workspace_id == api_keys.c.workspace_id) & (users.c.id == api_keys.c.user_id),
        )
        .where(api_keys.c.workspace_id == workspace_id)
        .order_by(api_keys.c.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(api_keys.c.id < before)
    return [dict(r) for r in conn.execute(query).mappings()]


def key_by_id(conn: Connection, workspace_id: int, key_id: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(
                api_keys.c.id, api_keys.c.user_id, api_keys.c.prefix, api_keys.c.revoked_at
            ).where(api_keys.c.workspace_id == workspace_id, api_keys.c.id == key_id)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def revoke_key(conn: Connection, workspace_id: int, key_id: str) -> None:
    conn.execute(
        update(api_keys)
        .where(
            api_keys.c.workspace_id == workspace_id,
            api_keys.c.id == key_id,
            api_keys.c.revoked_at.is_(None),
        )
        .values(revoked_at=now_us())
    )


def set_rate_limit(
    conn: Connection, workspace_id: int, per_minute: int | None, burst: int | None
) -> bool:
    """Set (or with None clear) a workspace's own API rate limit; False for no such workspace."""
    result = conn.execute(
        update(workspaces)
        .where(workspaces.c.id == workspace_id)
        .values(rate_limit_per_minute=per_minute, rate_limit_burst=burst)
    )
    return bool(result.rowcount)
