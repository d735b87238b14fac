"""Server-wide secrets kept in the database, so every process that shares it agrees."""

from __future__ import annotations

import secrets

from sqlalchemy import Column, String, Table, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from intently.kit.db import metadata, write_tx

server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),
)


def get_or_create_secret(engine: Engine, name: str) -> str:
    """The named secret, generated on first use."""
    for _ in range(2):
        try:
            with write_tx(engine) as conn:
                value = conn.execute(
                    select(server_secrets.c.value).where(server_secrets.c.name == name)
                ).scalar()
                if value is not None:
                    return str(value)
                value = secrets.token_hex(32)
                conn.execute(server_secrets.insert().values(name=name, value=value))
                return value
        except IntegrityError:  # another process created it first
            continue
    raise RuntimeError(f"could not read or create server secret {name!r}")
