"""background code batches (status, progress, request key), journey entries per step

Revision ID: 0006_dash_journeys
Revises: 0006_dash_settings
Create Date: 2026-12-01 02:45:00

"""
from alembic import op
import sqlalchemy as sa
import loyalty.db  # noqa: F401 - custom column types (UTCDateTime)

revision = "0006_dash_journeys"
down_revision = "0006_dash_settings"
branch_labels = None
depends_on = None

When = loyalty.db.UTCDateTime(timezone=True)


def upgrade():
    with op.batch_alter_table("coupon_batches", schema=None) as batch_op:
        # Every batch made before this revision was generated in one transaction: done.
        batch_op.add_column(
            sa.Column("status", sa.String(16), server_default="done", nullable=False)
        )
        batch_op.add_column(sa.Column("error", sa.String(500), nullable=True))
        batch_op.add_column(sa.Column("request_key", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("code_length", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("updated_at", When, nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_coupon_batches_request_key"), ["request_key"]
        )
        batch_op.create_check_constraint(
            "known_status", "status IN ('running', 'done', 'failed')"
        )
        batch_op.create_index(
            "ix_coupon_batches_running",
            ["id"],
            unique=False,
            postgresql_where=sa.text("status = 'running'"),
            sqlite_where=sa.text("status = 'running'"),
        )
    with op.batch_alter_table("journey_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_journey_entries_step", ["journey_id", "status", "step_index"], unique=False
        )


def downgrade():
    with op.batch_alter_table("journey_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_journey_entries_step")
    with op.batch_alter_table("coupon_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_coupon_batches_running")
        batch_op.drop_constraint(batch_op.f("ck_coupon_batches_known_status"), type_="check")
        batch_op.drop_constraint(batch_op.f("uq_coupon_batches_request_key"), type_="unique")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("code_length")
        batch_op.drop_column("request_key")
        batch_op.drop_column("error")
        batch_op.drop_column("status")
