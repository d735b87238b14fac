from sqlalchemy import BigInteger, Column, Index, Integer, String, Table

from intently.kit.db import JSONDoc, metadata

# Append-only. `seq` is the workspace change clock of the writing transaction (kit.db
# `tick`): it holds the clock until commit, so events become visible in `seq` order and a
# reader walking (seq, id) upwards never skips one that commits late.
events = Table(
    "events",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("type", String(40), nullable=False),
    Column("account_id", String(24), nullable=True),
    Column("occurred_at", BigInteger, nullable=False),
    Column("before", JSONDoc, nullable=True),
    Column("after", JSONDoc, nullable=True),
    # Context that is neither before nor after: the segment, the threshold, the cause.
    Column("data", JSONDoc, nullable=True),
)
Index("ix_events_workspace_id_seq_id", events.c.workspace_id, events.c.seq, events.c.id)
Index(
    "ix_events_workspace_id_type_seq_id",
    events.c.workspace_id,
    events.c.type,
    events.c.seq,
    events.c.id,
)
Index(
    "ix_events_workspace_id_account_id_seq",
    events.c.workspace_id,
    events.c.account_id,
    events.c.seq,
)

# The workspace's score thresholds: crossing one records `score.threshold_crossed`.
score_thresholds = Table(
    "score_thresholds",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("thresholds", JSONDoc, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
