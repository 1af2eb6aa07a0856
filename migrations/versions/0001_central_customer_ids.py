"""central customer IDs

Revision ID: 0001
Revises: -
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import singleid.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "customers",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("merged_into", sa.String(length=26), nullable=True),
        sa.Column("display_name_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("display_name_key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", singleid.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", singleid.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merged_into"], ["customers.id"], name=op.f("fk_customers_merged_into_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customers_merged_into"), ["merged_into"], unique=False)

    op.create_table(
        "idempotency_records",
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("result", sa.String(), nullable=False),
        sa.Column("created_at", singleid.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_records")),
    )
    op.create_table(
        "outbox_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("time", singleid.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("published_at", singleid.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_events_event_id")),
    )
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_events_unpublished", ["published_at", "seq"], unique=False)

    op.create_table(
        "products",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", singleid.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_products")),
    )
    op.create_table(
        "customer_identifiers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=26), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("blind_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("created_at", singleid.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_identifiers_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_identifiers")),
        sa.UniqueConstraint(
            "customer_id",
            "kind",
            "blind_index",
            name=op.f("uq_customer_identifiers_customer_id_kind_blind_index"),
        ),
    )
    with op.batch_alter_table("customer_identifiers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_customer_identifiers_lookup", ["kind", "blind_index"], unique=False
        )

    op.create_table(
        "match_candidates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=26), nullable=False),
        sa.Column("other_customer_id", sa.String(length=26), nullable=False),
        sa.Column("identifier_kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", singleid.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_match_candidates_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["other_customer_id"],
            ["customers.id"],
            name=op.f("fk_match_candidates_other_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_match_candidates")),
    )
    with op.batch_alter_table("match_candidates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_match_candidates_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_match_candidates_other_customer_id"), ["other_customer_id"], unique=False
        )

    op.create_table(
        "merges",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("survivor_id", sa.String(length=26), nullable=False),
        sa.Column("merged_id", sa.String(length=26), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("moved", sa.JSON(), nullable=False),
        sa.Column("merged_at", singleid.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("unmerged_at", singleid.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("unmerge_reason", sa.String(length=500), nullable=True),
        sa.Column("unmerge_actor", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["merged_id"], ["customers.id"], name=op.f("fk_merges_merged_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["survivor_id"], ["customers.id"], name=op.f("fk_merges_survivor_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merges")),
    )
    with op.batch_alter_table("merges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_merges_merged_id"), ["merged_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_merges_survivor_id"), ["survivor_id"], unique=False)

    op.create_table(
        "product_accounts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("product_code", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("customer_id", sa.String(length=26), nullable=False),
        sa.Column("linked_at", singleid.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_product_accounts_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["product_code"],
            ["products.code"],
            name=op.f("fk_product_accounts_product_code_products"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_accounts")),
        sa.UniqueConstraint(
            "product_code", "account_id", name=op.f("uq_product_accounts_product_code_account_id")
        ),
    )
    with op.batch_alter_table("product_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_product_accounts_customer_id"), ["customer_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("product_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_product_accounts_customer_id"))

    op.drop_table("product_accounts")
    with op.batch_alter_table("merges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_merges_survivor_id"))
        batch_op.drop_index(batch_op.f("ix_merges_merged_id"))

    op.drop_table("merges")
    with op.batch_alter_table("match_candidates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_match_candidates_other_customer_id"))
        batch_op.drop_index(batch_op.f("ix_match_candidates_customer_id"))

    op.drop_table("match_candidates")
    with op.batch_alter_table("customer_identifiers", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_identifiers_lookup")

    op.drop_table("customer_identifiers")
    op.drop_table("products")
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_events_unpublished")

    op.drop_table("outbox_events")
    op.drop_table("idempotency_records")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_merged_into"))

    op.drop_table("customers")
