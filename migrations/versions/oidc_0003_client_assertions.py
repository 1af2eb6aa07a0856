"""oidc: used private_key_jwt assertion IDs, shared by every process

Revision ID: oidc_0003
Revises: oidc_0002
Create Date: 2026-11-23 13:50:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import singleid.db

revision: str = 'oidc_0003'
down_revision: str | None = 'oidc_0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('oidc_client_assertions',
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('jti_digest', sa.LargeBinary(length=32), nullable=False),
    sa.Column('expires_at', singleid.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'jti_digest', name=op.f('pk_oidc_client_assertions'))
    )
    with op.batch_alter_table('oidc_client_assertions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_client_assertions_expires_at'), ['expires_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('oidc_client_assertions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oidc_client_assertions_expires_at'))

    op.drop_table('oidc_client_assertions')
