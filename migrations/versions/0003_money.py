"""money: paid points given back, expired points taken once, voided holds, activity timezone

Revision ID: 0003_money
Revises: (chained in merge order; see down_revision)
Create Date: 2026-11-30 14:00:00

- point_lots.expired_points / reversed_points: how a lot's points left it (backfilled from
  the ledger entries), so a refund never takes expired points a second time;
- point_holds.order_ref / returned: the order a capture paid (backfilled from the capture
  transaction's cause) and how much of it refunds gave back (CHECK returned <= captured);
- refunds.already_expired / points_returned; activity_events.timezone.

SQLite: point_lots is referenced by ledger_entries, so it is not rebuilt in batch mode
(with foreign keys on that would fail on a populated file); its new CHECK is created on
PostgreSQL and by create_all on new SQLite files.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0003_money"
down_revision = "0003_merges"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TALLIES = (
    "expired_points >= 0 AND reversed_points >= 0 "
    "AND expired_points + reversed_points <= amount - remaining"
)


def _zero(name):
    return sa.Column(name, BIGINT, server_default="0", nullable=False)


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column("point_lots", _zero("expired_points"))
    op.add_column("point_lots", _zero("reversed_points"))
    # What expired from each lot, and what reversals of the lot's own order took from it
    # (their cause refs are "<lot cause ref>/refund:..." or "<lot cause ref>/cancel").
    op.execute(
        """
        UPDATE point_lots SET expired_points = sums.points
        FROM (
            SELECT e.lot_id, SUM(e.amount) AS points
            FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.to_account_id
            WHERE a.code = 'expired' AND e.lot_id IS NOT NULL
            GROUP BY e.lot_id
        ) AS sums
        WHERE sums.lot_id = point_lots.id
        """
    )
    op.execute(
        """
        UPDATE point_lots SET reversed_points = sums.points
        FROM (
            SELECT e.lot_id, t.cause_ref, SUM(e.amount) AS points
            FROM ledger_entries e
            JOIN ledger_transactions t ON t.id = e.transaction_id
            JOIN ledger_accounts a ON a.id = e.to_account_id
            WHERE t.kind = 'reverse' AND a.code = 'issued' AND e.lot_id IS NOT NULL
            GROUP BY e.lot_id, t.cause_ref
        ) AS sums
        WHERE sums.lot_id = point_lots.id
          AND substr(sums.cause_ref, 1, length(point_lots.cause_ref) + 1)
              = point_lots.cause_ref || '/'
        """
    )
    if postgres:
        op.create_check_constraint("tallies_within_consumed", "point_lots", TALLIES)

    with op.batch_alter_table("point_holds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("order_ref", sa.String(length=128), nullable=True))
        batch_op.add_column(_zero("returned"))
        batch_op.create_index(batch_op.f("ix_point_holds_order_ref"), ["order_ref"], unique=False)
        batch_op.create_check_constraint(
            "returned_in_range", "returned >= 0 AND returned <= captured"
        )
    op.execute(
        """
        UPDATE point_holds SET order_ref = (
            SELECT t.cause_ref FROM ledger_transactions t
            WHERE t.id = point_holds.capture_transaction_id
              AND t.cause_type = 'hold' AND t.cause_ref NOT LIKE 'hold:%'
        )
        WHERE capture_transaction_id IS NOT NULL
        """
    )

    op.add_column("refunds", _zero("already_expired"))
    op.add_column("refunds", _zero("points_returned"))
    op.add_column("activity_events", sa.Column("timezone", sa.String(length=64), nullable=True))


def downgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("activity_events", schema=None) as batch_op:
        batch_op.drop_column("timezone")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_column("points_returned")
        batch_op.drop_column("already_expired")
    with op.batch_alter_table("point_holds", schema=None) as batch_op:
        batch_op.drop_constraint("returned_in_range", type_="check")
        batch_op.drop_index(batch_op.f("ix_point_holds_order_ref"))
        batch_op.drop_column("returned")
        batch_op.drop_column("order_ref")
    if postgres:
        op.drop_constraint("tallies_within_consumed", "point_lots", type_="check")
    # Not in batch mode on SQLite either (see the module docstring): a plain DROP COLUMN.
    for column in ("reversed_points", "expired_points"):
        op.execute(f"ALTER TABLE point_lots DROP COLUMN {column}")
