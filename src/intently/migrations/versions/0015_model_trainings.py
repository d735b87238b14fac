"""predictive model trainings; an explicit active scoring model version

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A trained model is stored without being activated, so "the newest version" no longer
    # says which one scores: the active one is the version activated last. Every version
    # stored so far was active from its creation on.
    with op.batch_alter_table("scoring_models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("activated_at", sa.BigInteger(), nullable=True))
    op.execute("UPDATE scoring_models SET activated_at = created_at")
    op.create_table(
        "model_trainings",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("heartbeat_at", sa.BigInteger(), nullable=True),
        sa.Column(
            "report",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.PrimaryKeyConstraint("workspace_id", "id"),
    )
    op.create_index(
        "ix_model_trainings_workspace_id_started_at",
        "model_trainings",
        ["workspace_id", "started_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_model_trainings_workspace_id_started_at", table_name="model_trainings")
    op.drop_table("model_trainings")
    with op.batch_alter_table("scoring_models", schema=None) as batch_op:
        batch_op.drop_column("activated_at")
