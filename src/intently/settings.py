"""Operator settings, read from the environment with the prefix INTENTLY_."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INTENTLY_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///intently.sqlite3",
        description="SQLAlchemy URL; a SQLite file in the working directory by default.",
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Secret for signing pagination cursors. Empty: one is generated once and kept in the
    # database, so every process that shares the database shares the secret.
    secret_key: str = ""
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    db_pool_size: int = Field(default=10, ge=1)
    # Seals vendor credentials (Bombora, G2, LinkedIn) in the database. Any long random
    # string; keep it out of the database and its backups. Without it no credentials can
    # be stored or used.
    credentials_key: str = ""
    # MaxMind-format IP databases (GeoIP2 Domain, ISP or Enterprise layouts), comma
    # separated, searched in order after a workspace's own uploaded ranges.
    ip_databases: str = ""
    # How long the collector holds accepted events before writing them (the most a crash
    # can lose), and how many events it writes at once.
    collector_flush_ms: int = Field(default=500, ge=10, le=60_000)
    collector_batch: int = Field(default=2000, ge=1, le=100_000)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
