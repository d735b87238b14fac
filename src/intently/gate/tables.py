"""Rate-limit buckets and stored idempotent responses."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, LargeBinary, String, Table

from intently.kit.db import metadata

# One token bucket per API key or collector write key (and per client address for
# requests without a valid key, under workspace 0). UNLOGGED on PostgreSQL (set by its
# migration): a bucket is worth no WAL write, and a crash that empties the table only
# refills every bucket.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("bucket", String(80), primary_key=True),
    Column("tokens", Float, nullable=False),
    # Seconds since the epoch on the database's clock, so every host agrees.
    Column("updated_at", Float, nullable=False),
)

# The first response to each Idempotency-Key, per workspace, for `idempotency_ttl_s`.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("key", String(255), primary_key=True),
    # SHA-256 of method, path, query and body: the same key with another request is 422.
    Column("fingerprint", String(64), nullable=False),
    # NULL while the first request runs; then its status, content type and body.
    Column("status", Integer, nullable=True),
    Column("content_type", String(200), nullable=True),
    Column("body", LargeBinary, nullable=True),
    Column("created_at", BigInteger, nullable=False),  # microseconds
    # Until when the running request holds the key (a dead process's claim then lapses).
    Column("claimed_until", BigInteger, nullable=False),
)
# The hourly sweep of expired keys runs across workspaces: the one index not led by
# workspace_id, like the job queue's tables.
Index("ix_idempotency_keys_created_at", idempotency_keys.c.created_at)
