"""privacy: idempotency records know their member; ledger notes beside the ledger

- idempotency_keys.member_id (indexed) and erased_at: erasure blanks the stored responses
  of writes that concerned the member.
- ledger_notes: an adjustment's free-text reason, outside the append-only ledger, so
  erasure can blank it. Reasons written before this revision stay in
  ledger_transactions.reason (append-only); see docs/architecture.md.

Revision ID: 0003_privacy
Revises: (chained in merge order; see down_revision)
"""

import sqlalchemy as sa
from alembic import op

import loyalty.db

revision = "0003_privacy"
down_revision = "0003_outbox"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("member_id", BigInt, nullable=True))
        batch.add_column(sa.Column("erased_at", loyalty.db.UTCDateTime(timezone=True)))
        batch.create_index("ix_idempotency_keys_member_id", ["member_id"])
    op.create_table(
        "ledger_notes",
        sa.Column("transaction_id", BigInt, nullable=False),
        sa.Column("member_id", BigInt, nullable=False),
        sa.Column("text", sa.String(length=500), nullable=True),
        sa.Column("created_at", loyalty.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("erased_at", loyalty.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_notes_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_ledger_notes")),
    )
    op.create_index("ix_ledger_notes_member_id", "ledger_notes", ["member_id"])


def downgrade():
    op.drop_index("ix_ledger_notes_member_id", table_name="ledger_notes")
    op.drop_table("ledger_notes")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_index("ix_idempotency_keys_member_id")
        batch.drop_column("erased_at")
        batch.drop_column("member_id")
