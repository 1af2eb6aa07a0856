"""staff accounts (operators, administrators) and their sessions

Revision ID: oidc_0002
Revises: oidc_0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import singleid.db

revision: str = "oidc_0002"
down_revision: str | None = "oidc_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oidc_staff",
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=512), nullable=False),
        sa.Column("totp_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("totp_key_id", sa.String(length=32), nullable=False),
        sa.Column("totp_last_step", sa.Integer(), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", singleid.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", singleid.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", singleid.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("login", name=op.f("pk_oidc_staff")),
    )
    op.create_table(
        "oidc_staff_sessions",
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("sid", sa.String(length=32), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("amr", sa.JSON(), nullable=False),
        sa.Column("created_at", singleid.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", singleid.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", singleid.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["login"], ["oidc_staff.login"],
                                name=op.f("fk_oidc_staff_sessions_login_oidc_staff")),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_oidc_staff_sessions")),
        sa.UniqueConstraint("sid", name=op.f("uq_oidc_staff_sessions_sid")),
    )
    with op.batch_alter_table("oidc_staff_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_staff_sessions_login"), ["login"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("oidc_staff_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_staff_sessions_login"))
    op.drop_table("oidc_staff_sessions")
    op.drop_table("oidc_staff")
