from sqlalchemy import BigInteger, Column, ForeignKey, Integer, String, Table, Text

from intently.kit.db import JSONDoc, metadata

custom_fields = Table(
    "custom_fields",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("key", String(300), primary_key=True),
    Column("label", Text, nullable=False),
    Column("label_type", String(32), nullable=False),
    Column("description", Text, nullable=True),
    Column("options", JSONDoc, nullable=False),
    Column("object_type", String(32), nullable=False, default="accounts"),
    Column("status", String(16), nullable=False),  # active | inactive
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
