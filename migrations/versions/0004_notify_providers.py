"""notification providers: Web Push subscriptions of the member app

Revision ID: 0004_notify_providers
Revises: 0004_notify_core
Create Date: 2026-11-30 15:00:00

"""
from alembic import op
import sqlalchemy as sa
import loyalty.db  # noqa: F401 - custom column types (UTCDateTime)

# revision identifiers, used by Alembic.
revision = '0004_notify_providers'
# After notify-core's revision (merged into this branch), so there is one head.
down_revision = '0004_notify_core'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('push_subscriptions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('endpoint', sa.String(length=2000), nullable=False),
    sa.Column('p256dh', sa.String(length=200), nullable=False),
    sa.Column('auth', sa.String(length=100), nullable=False),
    sa.Column('expires_at', loyalty.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', loyalty.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_push_subscriptions_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_push_subscriptions')),
    sa.UniqueConstraint('endpoint', name=op.f('uq_push_subscriptions_endpoint'))
    )
    op.create_index('ix_push_subscriptions_member_id_id', 'push_subscriptions', ['member_id', 'id'], unique=False)


def downgrade():
    op.drop_index('ix_push_subscriptions_member_id_id', table_name='push_subscriptions')
    op.drop_table('push_subscriptions')
