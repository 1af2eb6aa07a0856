"""audit trail: hash-chained records and their one-row chain head

Revision ID: audit_0001
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import singleid.db

revision: str = "audit_0001"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("audit",)
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("seq", SEQ, autoincrement=False, nullable=False),
        sa.Column("at", singleid.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=140), nullable=False),
        sa.Column("action", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("peer", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_records")),
    )
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_records_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_records_customer_id"), ["customer_id"],
                              unique=False)
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", SEQ, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    # The genesis: no record yet, and the all-zero hash that record 1 will point back to.
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": bytes(32)}])


def downgrade() -> None:
    op.drop_table("audit_chain_head")
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_records_customer_id"))
        batch_op.drop_index(batch_op.f("ix_audit_records_at"))
    op.drop_table("audit_records")
