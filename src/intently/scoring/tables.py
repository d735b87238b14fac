from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from intently.kit.db import JSONDoc, metadata

# Every change of a workspace's scoring model is a new version. The active one is the
# version activated last (PUT /scoring/model stores and activates at once; a trained model
# is stored unactivated, NULL, until someone activates it).
scoring_models = Table(
    "scoring_models",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("model", JSONDoc, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("activated_at", BigInteger, nullable=True),
)

# One row per training of a predictive model (scoring/training.py), with its report.
model_trainings = Table(
    "model_trainings",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("status", String(16), nullable=False),  # running | done | failed
    Column("horizon_days", Integer, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("heartbeat_at", BigInteger, nullable=True),  # kit/heartbeat.py, as scoring runs
    Column("report", JSONDoc, nullable=True),
    Column("error", Text, nullable=True),
    Column("model_version", Integer, nullable=True),  # the version it stored, when done
)
Index(
    "ix_model_trainings_workspace_id_started_at",
    model_trainings.c.workspace_id,
    model_trainings.c.started_at,
)

# One row per scoring run, full or incremental, with what it did.
scoring_runs = Table(
    "scoring_runs",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("kind", String(16), nullable=False),  # full | incremental | accounts
    Column("status", String(16), nullable=False),  # running | done | failed
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("scored", Integer, nullable=False, default=0),
    Column("changed", Integer, nullable=False, default=0),
    Column("model_version", Integer, nullable=False),
    # Signals, deals and activities seen up to here are scored once the run is done;
    # the next incremental run looks after it (the newest done run's watermark).
    Column("watermark", BigInteger, nullable=False),
    Column("error", Text, nullable=True),
    # Stamped by the process running it while it runs (kit/heartbeat.py): a run whose
    # stamp is older than the lease is stopped (its process ended) and marked failed.
    Column("heartbeat_at", BigInteger, nullable=True),
)
Index(
    "ix_scoring_runs_workspace_id_started_at",
    scoring_runs.c.workspace_id,
    scoring_runs.c.started_at,
)

# Per workspace and kind of run: who holds it until when, so one worker runs it at a time.
scoring_claims = Table(
    "scoring_claims",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("held_until", BigInteger, nullable=False),
    Column("last_started_at", BigInteger, nullable=True),
)

# The parts of a sharded full run (a workspace too big for one worker): parts 1..K score
# the accounts with after_id < id <= upto_id (NULL: open), part 0 finishes the run once
# they are all done. A worker holds a part until held_until, moving it on per batch with
# its progress (done_upto, counts) in the batch's own transaction; a part whose holder
# died lapses and is redone from done_upto. `attempt` fences a holder that lost it.
scoring_parts = Table(
    "scoring_parts",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("run_id", String(24), primary_key=True),
    Column("part", Integer, primary_key=True),
    Column("after_id", String(24), nullable=True),
    Column("upto_id", String(24), nullable=True),
    Column("done_upto", String(24), nullable=True),
    Column("status", String(16), nullable=False),  # pending | running | done | failed | cancelled
    Column("attempt", Integer, nullable=False, default=0),
    Column("held_until", BigInteger, nullable=False, default=0),
    Column("queued_at", BigInteger, nullable=True),  # NULL: not waiting in the queue
    Column("scored", Integer, nullable=False, default=0),
    Column("changed", Integer, nullable=False, default=0),
    Column("segment_moves", Integer, nullable=False, default=0),
    Column("finished_at", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
)

# Incremental runs look up the domains that received signals since their watermark.
from intently.signals.tables import signals  # noqa: E402

Index("ix_signals_workspace_id_received_at", signals.c.workspace_id, signals.c.received_at)

# ... and the accounts whose deals or sales activities changed (their stage may move).
from intently.activities.tables import activities  # noqa: E402
from intently.deals.tables import deals  # noqa: E402

Index("ix_deals_workspace_id_updated_at", deals.c.workspace_id, deals.c.updated_at)
Index("ix_activities_workspace_id_created_at", activities.c.workspace_id, activities.c.created_at)
