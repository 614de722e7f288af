"""outbox: per-consumer deliveries (backoff, dead letters, per-member order)

Revision ID: 0003_outbox
Revises: (chained in merge order; see down_revision)
Create Date: 2026-11-30 13:50:00

`outbox_events.published_at` becomes `dispatched_at` (an event published under the old relay
counts as dispatched: its consumers had it), `attempts` moves to the deliveries. Free-text
reasons are removed from existing events' payloads (not restored by the downgrade).
"""
from alembic import op
import sqlalchemy as sa
import loyalty.db  # noqa: F401 - custom column types (UTCDateTime)


# revision identifiers, used by Alembic.
revision = '0003_outbox'
down_revision = "0003_money"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
PENDING = sa.text("status = 'pending'")
DEAD = sa.text("status = 'dead'")


def upgrade():
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_events_unpublished', postgresql_where=sa.text('published_at IS NULL'), sqlite_where=sa.text('published_at IS NULL'))
        batch_op.alter_column('published_at', new_column_name='dispatched_at')
        batch_op.drop_column('attempts')
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_events_dispatched_at'), ['dispatched_at'], unique=False)
        batch_op.create_index('ix_outbox_events_undispatched', ['id'], unique=False, postgresql_where=sa.text('dispatched_at IS NULL'), sqlite_where=sa.text('dispatched_at IS NULL'))

    # Events carry ids, not personal data: drop the free-text reasons older events carried.
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("UPDATE outbox_events SET payload = payload - 'reason' WHERE topic IN ('points.adjusted', 'member.blocked')")
    else:
        op.execute("UPDATE outbox_events SET payload = json_remove(payload, '$.reason') WHERE topic IN ('points.adjusted', 'member.blocked')")

    op.create_table('outbox_deliveries',
    sa.Column('id', BigInt, nullable=False),
    sa.Column('event_id', BigInt, nullable=False),
    sa.Column('consumer', sa.String(length=100), nullable=False),
    sa.Column('member_id', BigInt, nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', loyalty.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claim_token', sa.String(length=32), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', loyalty.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', loyalty.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('done_at', loyalty.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'done', 'dead')", name=op.f('ck_outbox_deliveries_status_known')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_outbox_deliveries_attempts_not_negative')),
    sa.ForeignKeyConstraint(['event_id'], ['outbox_events.id'], name=op.f('fk_outbox_deliveries_event_id_outbox_events')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_deliveries')),
    sa.UniqueConstraint('event_id', 'consumer', name=op.f('uq_outbox_deliveries_event_id_consumer'))
    )
    with op.batch_alter_table('outbox_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_deliveries_due', ['consumer', 'next_attempt_at'], unique=False, postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.create_index('ix_outbox_deliveries_member_queue', ['consumer', 'member_id', 'event_id'], unique=False, postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.create_index('ix_outbox_deliveries_dead', ['id'], unique=False, postgresql_where=DEAD, sqlite_where=DEAD)


def downgrade():
    with op.batch_alter_table('outbox_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_deliveries_dead', postgresql_where=DEAD, sqlite_where=DEAD)
        batch_op.drop_index('ix_outbox_deliveries_member_queue', postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.drop_index('ix_outbox_deliveries_due', postgresql_where=PENDING, sqlite_where=PENDING)
    op.drop_table('outbox_deliveries')

    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_events_undispatched', postgresql_where=sa.text('dispatched_at IS NULL'), sqlite_where=sa.text('dispatched_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_outbox_events_dispatched_at'))
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.alter_column('dispatched_at', new_column_name='published_at')
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.alter_column('attempts', server_default=None)
        batch_op.create_index('ix_outbox_events_unpublished', ['id'], unique=False, postgresql_where=sa.text('published_at IS NULL'), sqlite_where=sa.text('published_at IS NULL'))
