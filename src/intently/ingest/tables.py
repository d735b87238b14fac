from sqlalchemy import BigInteger, Column, Float, ForeignKey, Index, Integer, String, Table, Text

from intently.kit.db import JSONDoc, metadata

# The public key a website's snippet (or a Segment-compatible source) sends as Basic user.
write_keys = Table(
    "write_keys",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)
Index("uq_write_keys_key", write_keys.c.key, unique=True)

# Every accepted collector event. `ip` is dropped after the workspace's retention window.
web_events = Table(
    "web_events",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("message_id", Text, nullable=False),
    Column("type", String(16), nullable=False),  # page | track | identify | group
    Column("event", Text, nullable=True),  # track: the event name
    Column("anonymous_id", Text, nullable=True),
    Column("user_id", Text, nullable=True),
    Column("occurred_at", BigInteger, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Column("url", Text, nullable=True),
    Column("path", Text, nullable=True),
    Column("title", Text, nullable=True),
    Column("referrer", Text, nullable=True),
    Column("ip", String(45), nullable=True),
    # The account the event resolved to, when it did, and how.
    Column("domain", String(253), nullable=True),
    Column("match_method", String(32), nullable=True),
    Column("provider", String(64), nullable=True),
    Column("confidence", Float, nullable=True),
    Column("properties", JSONDoc, nullable=False),
)
Index(
    "uq_web_events_workspace_id_message_id",
    web_events.c.workspace_id,
    web_events.c.message_id,
    unique=True,
)
Index(
    "ix_web_events_workspace_id_received_at",
    web_events.c.workspace_id,
    web_events.c.received_at,
)
Index(
    "ix_web_events_workspace_id_anonymous_id",
    web_events.c.workspace_id,
    web_events.c.anonymous_id,
)

# What an anonymous id (or user id) was last resolved to, so its later visits resolve too.
web_identities = Table(
    "web_identities",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("anonymous_id", Text, primary_key=True),
    Column("domain", String(253), nullable=False),
    Column("match_method", String(32), nullable=False),  # group | email | ip
    Column("provider", String(64), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Identities claimed by browsers (group traits, identify emails): which domains each
# anonymous id (`v:<id>`) and each client address (`a:<keyed hash>`, never the address)
# claimed, and when first in the window, so the collector can bound them per visitor and
# per address. Rows older than the window are deleted.
web_claims = Table(
    "web_claims",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("subject", String(300), primary_key=True),
    Column("domain", String(253), primary_key=True),
    Column("claimed_at", BigInteger, nullable=False),
)
Index("ix_web_claims_workspace_id_claimed_at", web_claims.c.workspace_id, web_claims.c.claimed_at)

# A workspace's own IP ranges (CSV `network,domain[,company]`), most specific wins.
ip_ranges = Table(
    "ip_ranges",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("network", String(64), primary_key=True),  # canonical CIDR
    Column("domain", String(253), nullable=False),
    Column("company", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

# LinkedIn organization URN -> domain, set by hand or learned from an account's linkedinUrl.
linkedin_orgs = Table(
    "linkedin_orgs",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("org", String(64), primary_key=True),  # urn:li:organization:<id>
    Column("domain", String(253), nullable=False),
    Column("name", Text, nullable=True),
    Column("origin", String(16), nullable=False),  # manual | import | website
    Column("updated_at", BigInteger, nullable=False),
)

# Moves with every change to a workspace's ip_ranges (same transaction), so each process's
# resolver learns of a change with one primary-key read, not an aggregate over the ranges.
ip_range_versions = Table(
    "ip_range_versions",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("version", BigInteger, nullable=False),
)
