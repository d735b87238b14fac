from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from intently.kit.db import JSONDoc, metadata

segments = Table(
    "segments",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", String(24), primary_key=True),
    Column("name", Text, nullable=False),
    Column("type", String(16), nullable=False),  # static | dynamic
    Column("status", String(16), nullable=False),  # draft | active | archived
    Column("rules", JSONDoc, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

segment_members = Table(
    "segment_members",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("segment_id", String(24), primary_key=True),
    Column("account_id", String(24), primary_key=True),
    Column("added_at", BigInteger, nullable=False),
)

Index(
    "ix_segment_members_workspace_id_account_id",
    segment_members.c.workspace_id,
    segment_members.c.account_id,
)
