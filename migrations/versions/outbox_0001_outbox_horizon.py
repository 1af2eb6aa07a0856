"""outbox horizon: how far pruning has gone

Revision ID: outbox_0001
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "outbox_0001"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("outbox",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_horizon",
        sa.Column("name", sa.String(length=16), nullable=False),
        sa.Column("pruned_through", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_outbox_horizon")),
    )


def downgrade() -> None:
    op.drop_table("outbox_horizon")
