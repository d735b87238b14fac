"""Vendor connections: credentials sealed with the operator's key, config, and resume state.

Credentials are encrypted (Fernet: AES-128-CBC with HMAC-SHA256) with a key derived from
INTENTLY_CREDENTIALS_KEY, never logged and never returned by any endpoint or command.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import msgspec
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from intently.kit.db import read_tx, write_tx
from intently.kit.errors import BadRequest, NotFound
from intently.kit.timefmt import now_us
from intently.signals.tables import connections as conn_t

PROVIDERS = ("bombora", "g2", "linkedin")

NO_KEY = (
    "INTENTLY_CREDENTIALS_KEY is not set: set it to a long random string (for example the "
    "output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) to store "
    "and use vendor credentials"
)


def _fernet(key: str) -> Fernet:
    if not key:
        raise BadRequest(NO_KEY)
    digest = hashlib.sha256(("intently-credentials:" + key).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(key: str, credentials: dict[str, Any]) -> str:
    return _fernet(key).encrypt(msgspec.json.encode(credentials)).decode("ascii")


def unseal(key: str, token: str) -> dict[str, Any]:
    try:
        data = _fernet(key).decrypt(token.encode("ascii"))
    except InvalidToken:
        raise BadRequest(
            "stored credentials cannot be decrypted with INTENTLY_CREDENTIALS_KEY "
            "(was the key changed?); set the connection's credentials again"
        ) from None
    result: dict[str, Any] = msgspec.json.decode(data)
    return result


def _check_provider(provider: str) -> None:
    if provider not in PROVIDERS:
        raise BadRequest(f"provider '{provider}' is not one of {', '.join(PROVIDERS)}")


def set_connection(
    engine: Engine,
    ws: int,
    provider: str,
    *,
    key: str,
    credentials: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    enabled: bool | None = None,
) -> None:
    """Create or change a connection; what is not given keeps its value."""
    _check_provider(provider)
    now = now_us()
    with write_tx(engine) as conn:
        row = conn.execute(
            select(conn_t).where(conn_t.c.workspace_id == ws, conn_t.c.provider == provider)
        ).first()
        if row is None:
            if credentials is None:
                raise BadRequest(f"connection '{provider}' needs credentials when created")
            conn.execute(
                insert(conn_t),
                {
                    "workspace_id": ws,
                    "provider": provider,
                    "sealed_credentials": seal(key, credentials),
                    "config": config or {},
                    "state": {},
                    "enabled": True if enabled is None else enabled,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            return
        values: dict[str, Any] = {"updated_at": now}
        if credentials is not None:
            values["sealed_credentials"] = seal(key, credentials)
        if config is not None:
            values["config"] = dict(row._mapping["config"] or {}) | config
        if enabled is not None:
            values["enabled"] = enabled
        conn.execute(
            update(conn_t)
            .where(conn_t.c.workspace_id == ws, conn_t.c.provider == provider)
            .values(**values)
        )


def get_connection(engine: Engine, ws: int, provider: str, *, key: str) -> dict[str, Any]:
    """{"credentials", "config", "state", "enabled", ...}; credentials decrypted for use."""
    _check_provider(provider)
    with read_tx(engine) as conn:
        row = conn.execute(
            select(conn_t).where(conn_t.c.workspace_id == ws, conn_t.c.provider == provider)
        ).first()
    if row is None:
        raise NotFound(f"No '{provider}' connection in this workspace")
    m = dict(row._mapping)
    m["credentials"] = unseal(key, m.pop("sealed_credentials"))
    return m


def describe(engine: Engine, ws: int) -> list[dict[str, Any]]:
    """Every connection without its credentials (what commands and endpoints may show)."""
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(conn_t).where(conn_t.c.workspace_id == ws).order_by(conn_t.c.provider)
        ).all()
    out = []
    for r in rows:
        m = dict(r._mapping)
        m.pop("sealed_credentials")
        out.append(m)
    return out


def save_state(
    engine: Engine,
    ws: int,
    provider: str,
    *,
    state: dict[str, Any] | None,
    status: str,
    error: str | None = None,
) -> None:
    """Record a pull's outcome; `state` (the resume point) only moves when given."""
    values: dict[str, Any] = {
        "last_run_at": now_us(),
        "last_status": status,
        "last_error": error,
    }
    if state is not None:
        values["state"] = state
    with write_tx(engine) as conn:
        conn.execute(
            update(conn_t)
            .where(conn_t.c.workspace_id == ws, conn_t.c.provider == provider)
            .values(**values)
        )
