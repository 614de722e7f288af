"""integrators' own ids and data: members.external_id, metadata, rollback reasons, offer
counters for offers without a cap

Revision ID: 0005_integrator_ids
Revises: 0004_notify_webhooks
Create Date: 2026-11-30 20:40:00

Offers without a cap counted nothing until now: their `coupon_offer_counters` start from
the redemptions already held or redeemed (one INSERT ... SELECT below).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_integrator_ids"
down_revision = "0004_notify_webhooks"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    # Plain ADD COLUMN (no batch copy of `members`: SQLite would drop a referenced table).
    op.add_column("members", sa.Column("external_id", sa.String(128), nullable=True))
    op.add_column("members", sa.Column("metadata", sa.JSON(), nullable=True))
    op.create_index("uq_members_external_id", "members", ["external_id"], unique=True)
    op.add_column("orders", sa.Column("metadata", sa.JSON(), nullable=True))
    op.add_column("coupon_offers", sa.Column("metadata", sa.JSON(), nullable=True))
    op.add_column("coupon_redemptions", sa.Column("rollback_reason", sa.String(500)))
    op.add_column("coupon_redemptions", sa.Column("metadata", sa.JSON(), nullable=True))
    op.create_table(
        "coupon_offer_counters",
        sa.Column("offer_id", BigInt, nullable=False),
        sa.Column("stripe", sa.SmallInteger(), nullable=False),
        sa.Column("redemptions", BigInt, nullable=False),
        sa.Column("discount_minor", BigInt, nullable=False),
        sa.ForeignKeyConstraint(
            ["offer_id"],
            ["coupon_offers.id"],
            name=op.f("fk_coupon_offer_counters_offer_id_coupon_offers"),
        ),
        sa.PrimaryKeyConstraint("offer_id", "stripe", name=op.f("pk_coupon_offer_counters")),
    )
    op.execute(
        "INSERT INTO coupon_offer_counters (offer_id, stripe, redemptions, discount_minor) "
        "SELECT offer_id, 0, COUNT(*), COALESCE(SUM(discount_minor), 0) "
        "FROM coupon_redemptions WHERE status IN ('held', 'redeemed') AND NOT counted_offer "
        "GROUP BY offer_id"
    )


def downgrade():
    op.drop_table("coupon_offer_counters")
    op.drop_index("uq_members_external_id", table_name="members")
    for table, column in (
        ("coupon_redemptions", "metadata"),
        ("coupon_redemptions", "rollback_reason"),
        ("coupon_offers", "metadata"),
        ("orders", "metadata"),
        ("members", "metadata"),
        ("members", "external_id"),
    ):
        op.drop_column(table, column)
