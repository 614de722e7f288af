"""security: member token epochs, one use per member QR token

Revision ID: 0003_security
Revises: (chained in merge order; see down_revision)
Create Date: 2026-11-30 13:45:00

"""
from alembic import op
import sqlalchemy as sa
import loyalty.db  # noqa: F401 - custom column types (UTCDateTime)


# revision identifiers, used by Alembic.
revision = '0003_security'
down_revision = "0003_privacy"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('token_epoch', sa.Integer(), server_default='0', nullable=False)
        )
    op.create_table('used_member_qr_tokens',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('used_at', loyalty.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', loyalty.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('digest', name=op.f('pk_used_member_qr_tokens'))
    )
    with op.batch_alter_table('used_member_qr_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_used_member_qr_tokens_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('used_member_qr_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_used_member_qr_tokens_expires_at'))
    op.drop_table('used_member_qr_tokens')
    # A plain DROP COLUMN (SQLite >= 3.35): batch mode would recreate `members`, which other
    # tables' rows reference, and SQLite refuses to drop a referenced table.
    op.drop_column('members', 'token_epoch')
