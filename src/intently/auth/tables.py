from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Index, Integer, String, Table

from intently.kit.db import metadata

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("api_access", Boolean, nullable=False, default=True),
    # Microseconds; advanced by every write that changes an account (kit.db.tick).
    Column("change_clock", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # The workspace's own API rate limit; NULL takes the operator's default.
    Column("rate_limit_per_minute", Integer, nullable=True),
    Column("rate_limit_burst", Integer, nullable=True),
)

users = Table(
    "users",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # argon2id hash; NULL for a user who only holds an API key and cannot sign in.
    Column("password_hash", String(200), nullable=True),
    Column("role", String(16), nullable=False, server_default="member"),  # admin | member
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("user_id", String(24), nullable=False),
    # SHA-256 of the key; the key itself is shown once and never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)

Index("uq_users_workspace_id_email", users.c.workspace_id, users.c.email, unique=True)
Index("ix_api_keys_workspace_id_user_id", api_keys.c.workspace_id, api_keys.c.user_id)

# Dashboard sessions. The cookie holds a random token; only its SHA-256 is stored, so a
# copy of the database signs nobody in.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(64), primary_key=True),  # SHA-256 of the cookie token
    Column("user_id", String(24), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

Index("uq_web_sessions_id", web_sessions.c.id, unique=True)
Index("ix_web_sessions_workspace_id_user_id", web_sessions.c.workspace_id, web_sessions.c.user_id)
