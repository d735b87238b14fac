from sqlalchemy import BigInteger, Column, Float, ForeignKey, Index, Integer, String, Table, Text

from intently.kit.db import JSONDoc, metadata

# Every saved stage list is a new version; the newest is the workspace's active one.
stage_sets = Table(
    "stage_sets",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("definition", JSONDoc, nullable=False),  # {"stages": [...], "dealStages": {...}}
    Column("created_at", BigInteger, nullable=False),
)

# Append-only: when an account's stage changed, from what, to what, and which stage's
# rule put it there (the fallback stage has no rule: `rule` is null).
stage_changes = Table(
    "stage_changes",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("account_id", String(24), nullable=False),
    Column("changed_at", BigInteger, nullable=False),
    Column("from_stage", Text, nullable=True),
    Column("to_stage", Text, nullable=False),
    Column("rule", JSONDoc, nullable=True),
    Column("stage_set_version", Integer, nullable=False),
    Column("cause", String(32), nullable=False),  # scoring run kind: full | incremental | ...
)
Index(
    "ix_stage_changes_workspace_id_account_id_changed_at",
    stage_changes.c.workspace_id,
    stage_changes.c.account_id,
    stage_changes.c.changed_at,
)

# An account's score and stage per UTC day, as the last run of that day left them:
# written for the accounts a run changed, so a day with no change has no row and the
# history reads as "unchanged since the row before".
journey_days = Table(
    "journey_days",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("account_id", String(24), primary_key=True),
    Column("day", Integer, primary_key=True),  # UTC days since the epoch
    Column("score", Float, nullable=False),
    Column("stage", Text, nullable=True),
)
