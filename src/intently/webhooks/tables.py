from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from intently.kit.db import JSONDoc, metadata

webhooks = Table(
    "webhooks",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("url", Text, nullable=False),
    Column("event_types", JSONDoc, nullable=False),  # list of event types; ["*"] is every type
    Column("secret", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("status", String(16), nullable=False),  # active | disabled
    Column("disabled_reason", Text, nullable=True),
    Column("disabled_at", BigInteger, nullable=True),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("last_success_at", BigInteger, nullable=True),
    Column("last_failure_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# The outbox: one row per (webhook, event), written in the transaction that records the
# event, so a rolled-back change delivers nothing and a committed one is never lost.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("webhook_id", String(24), nullable=False),
    Column("event_id", String(24), nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", BigInteger, nullable=False),
    # A dispatcher's claim: until then no other dispatcher takes the row. A dispatcher
    # that dies mid-delivery leaves a claim that simply runs out; the row goes again.
    Column("locked_until", BigInteger, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger, nullable=True),
)
Index(
    "ix_webhook_deliveries_workspace_id_webhook_id_id",
    webhook_deliveries.c.workspace_id,
    webhook_deliveries.c.webhook_id,
    webhook_deliveries.c.id,
)
# The dispatchers' queue across workspaces (like the job tables, the one place a key does
# not start with workspace_id: the queue is served for every workspace at once).
Index(
    "ix_webhook_deliveries_status_next_attempt_at",
    webhook_deliveries.c.status,
    webhook_deliveries.c.next_attempt_at,
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("delivery_id", String(24), nullable=False),
    Column("webhook_id", String(24), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
)
Index(
    "ix_webhook_attempts_workspace_id_delivery_id_attempt",
    webhook_attempts.c.workspace_id,
    webhook_attempts.c.delivery_id,
    webhook_attempts.c.attempt,
)
Index(
    "ix_webhook_attempts_workspace_id_webhook_id_at",
    webhook_attempts.c.workspace_id,
    webhook_attempts.c.webhook_id,
    webhook_attempts.c.at,
)
