from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from intently.kit.db import JSONDoc, metadata

# One row per signal, keyed by domain (not account): a signal for a domain with no account
# yet is kept, and counts for the account as soon as one exists with that domain.
signals = Table(
    "signals",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("domain", String(253), nullable=False),  # normalised
    Column("source", String(32), nullable=False),
    Column("type", String(48), nullable=False),
    Column("topic", Text, nullable=False),  # '' when the source has none
    Column("occurred_at", BigInteger, nullable=False),  # micros; late data counts then
    Column("day", Integer, nullable=False),  # UTC days since the epoch of occurred_at
    Column("value", Float, nullable=False),
    # Provenance: who said so, how the domain was matched, and how sure that match is.
    Column("provider", String(64), nullable=False),
    Column("match_method", String(32), nullable=False),
    Column("confidence", Float, nullable=False),
    # The source's own identity of the signal: re-importing it is a duplicate, not a copy.
    Column("natural_key", Text, nullable=False),
    Column("run_id", String(24), nullable=True),
    Column("received_at", BigInteger, nullable=False),
)
Index(
    "uq_signals_workspace_id_source_natural_key",
    signals.c.workspace_id,
    signals.c.source,
    signals.c.natural_key,
    unique=True,
)
Index(
    "ix_signals_workspace_id_domain_occurred_at",
    signals.c.workspace_id,
    signals.c.domain,
    signals.c.occurred_at,
)

# Signals per domain, source, type, topic and day; scoring reads these, not `signals`.
signal_daily = Table(
    "signal_daily",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("domain", String(253), primary_key=True),
    Column("source", String(32), primary_key=True),
    Column("type", String(48), primary_key=True),
    Column("topic", Text, primary_key=True),
    Column("day", Integer, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("value_sum", Float, nullable=False),
)
Index("ix_signal_daily_workspace_id_day", signal_daily.c.workspace_id, signal_daily.c.day)

# Every import, pull, API push and collector flush, with its counts.
ingest_runs = Table(
    "ingest_runs",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("source", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # file | pull | api
    Column("label", Text, nullable=False),  # file name, pulled window, ...
    Column("status", String(16), nullable=False),  # running | done | failed
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("read", Integer, nullable=False, default=0),
    Column("accepted", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("duplicate", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    # {"rejected": {reason: n}, "skipped": {reason: n}}
    Column("reasons", JSONDoc, nullable=False),
    Column("error", Text, nullable=True),
    # Stamped by the process running it while it runs (kit/heartbeat.py): a run whose
    # stamp is older than the lease is stopped (its process ended) and marked failed.
    Column("heartbeat_at", BigInteger, nullable=True),
)
Index(
    "ix_ingest_runs_workspace_id_source_started_at",
    ingest_runs.c.workspace_id,
    ingest_runs.c.source,
    ingest_runs.c.started_at,
)

# Rows and events that could not be used, with why; listable, exportable, re-appliable.
signal_rejects = Table(
    "signal_rejects",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("run_id", String(24), nullable=True),
    Column("source", String(32), nullable=False),
    Column("line", Integer, nullable=True),  # 1-based line of the file, header = 1
    Column("reason", String(48), nullable=False),
    Column("detail", Text, nullable=False),
    Column("record", JSONDoc, nullable=False),  # the row or event as read
    # What would let it be re-applied (a LinkedIn organization URN, say), when anything.
    Column("ref", Text, nullable=True),
    Column("status", String(16), nullable=False),  # open | reapplied
    Column("created_at", BigInteger, nullable=False),
)
Index(
    "ix_signal_rejects_workspace_id_source_status",
    signal_rejects.c.workspace_id,
    signal_rejects.c.source,
    signal_rejects.c.status,
)

# Per workspace and source: the editable settings (thresholds, topics, tag maps, ...).
source_settings = Table(
    "source_settings",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("source", String(32), primary_key=True),
    Column("config", JSONDoc, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Sources a workspace registered beyond the four built-in ones (for POST /signals).
custom_sources = Table(
    "custom_sources",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
)

# Vendor pullers: credentials sealed with the operator's key, and where each pull stopped.
connections = Table(
    "connections",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("provider", String(32), primary_key=True),  # bombora | g2 | linkedin
    Column("sealed_credentials", Text, nullable=False),
    Column("config", JSONDoc, nullable=False),  # not secret: base URL, account ids, ...
    Column("state", JSONDoc, nullable=False),  # resume point
    Column("enabled", Boolean, nullable=False),
    Column("last_run_at", BigInteger, nullable=True),
    Column("last_status", String(16), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
