"""voice: biometric consent from the profile; the temporary consent table goes

Revision ID: voice_0002
Revises: voice_0001
Create Date: 2026-11-23 14:05:00

Consents live in the profile (decision 0502). The rows of ``voiceprint_consents``
are not carried over: a profile consent records the text version the customer
agreed to and the channel, which the temporary table never had, so a customer
with a voiceprint must consent again through the profile before the next
verification.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import singleid.db

revision: str = 'voice_0002'
down_revision: str | None = 'voice_0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('voiceprint_consent_feed',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('token', sa.Text(), nullable=False),
    sa.Column('updated_at', singleid.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_voiceprint_consent_feed'))
    )
    op.drop_table('voiceprint_consents')


def downgrade() -> None:
    op.create_table('voiceprint_consents',
    sa.Column('customer_id', sa.String(length=26), nullable=False),
    sa.Column('granted', sa.Boolean(), nullable=False),
    sa.Column('updated_at', singleid.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_voiceprint_consents'))
    )
    op.drop_table('voiceprint_consent_feed')
