"""account profile: industry, size, revenue, location and logo; ICP fit score and grade

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("industry", sa.Text()),
    ("employee_count", sa.BigInteger()),
    ("annual_revenue", sa.Float()),
    ("country", sa.String(length=2)),
    ("city", sa.Text()),
    ("logo_url", sa.Text()),
    ("rtp_fit_score", sa.Float()),
    ("rtp_grade", sa.String(length=8)),
)


def upgrade() -> None:
    # Nullable columns without a default: SQLite adds them in place, PostgreSQL without
    # rewriting the table, so this is quick on a million accounts.
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        for name, kind in _COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        for name, _ in reversed(_COLUMNS):
            batch_op.drop_column(name)
