"""oidc: client bindings (product, source, sensitivity), disabled clients, access-token IDs

Revision ID: oidc_0004
Revises: oidc_0003
Create Date: 2026-11-23 13:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import singleid.db

revision: str = 'oidc_0004'
down_revision: str | None = 'oidc_0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('oidc_clients') as batch:
        batch.add_column(sa.Column('product_code', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('profile_source', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('max_sensitivity', sa.String(length=16), nullable=False,
                                   server_default='ordinary'))
        batch.add_column(sa.Column('verified_call_only', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column('disabled_at', singleid.db.UTCDateTime(timezone=True),
                                   nullable=True))
    with op.batch_alter_table('oidc_tokens') as batch:
        batch.add_column(sa.Column('jti', sa.String(length=64), nullable=True))
        batch.create_index('ix_oidc_tokens_jti', ['jti'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('oidc_tokens') as batch:
        batch.drop_index('ix_oidc_tokens_jti')
        batch.drop_column('jti')
    with op.batch_alter_table('oidc_clients') as batch:
        batch.drop_column('disabled_at')
        batch.drop_column('verified_call_only')
        batch.drop_column('max_sensitivity')
        batch.drop_column('profile_source')
        batch.drop_column('product_code')
