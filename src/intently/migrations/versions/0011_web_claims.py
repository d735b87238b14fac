"""web claims: identities claimed by browsers, bounded per visitor and per address

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_claims",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("claimed_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_web_claims_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("workspace_id", "subject", "domain", name=op.f("pk_web_claims")),
    )
    op.create_index(
        op.f("ix_web_claims_workspace_id_claimed_at"),
        "web_claims",
        ["workspace_id", "claimed_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_web_claims_workspace_id_claimed_at"), table_name="web_claims")
    op.drop_table("web_claims")
