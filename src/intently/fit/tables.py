from sqlalchemy import BigInteger, Column, ForeignKey, Integer, Table

from intently.kit.db import JSONDoc, metadata

# Every change of a workspace's fit model is a new version; the newest is active (as the
# scoring model's versions).
fit_models = Table(
    "fit_models",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("model", JSONDoc, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
