"""journeys: control groups (holdout, attribution window, held-out entries); the birthday
scan's index

Revision ID: 0007_audit9j_journeys
Revises: 0006_dash_journeys
Create Date: 2026-12-01 08:20:00

"""

from alembic import op
import sqlalchemy as sa
from loyalty.db import month_day

revision = "0007_audit9j_journeys"
down_revision = "0006_dash_journeys"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("journeys", schema=None) as batch_op:
        # Journeys made before control groups existed keep running without one (0 %); new
        # journeys hold out 10 % unless told otherwise (the default set below).
        batch_op.add_column(
            sa.Column("holdout_pct", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("attribution_days", sa.Integer(), server_default="7", nullable=False)
        )
        batch_op.create_check_constraint("holdout_range", "holdout_pct >= 0 AND holdout_pct <= 50")
        batch_op.create_check_constraint("attribution_positive", "attribution_days >= 1")
    with op.batch_alter_table("journeys", schema=None) as batch_op:
        # From now on a journey written without one (raw SQL too) holds out 10 %.
        batch_op.alter_column("holdout_pct", server_default="10")
    with op.batch_alter_table("journey_entries", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_journey_entries_known_status"), type_="check")
        batch_op.create_check_constraint(
            "known_status", "status IN ('active', 'completed', 'exited', 'held_out')"
        )
    op.create_index(
        "ix_members_birthday_day",
        "members",
        [month_day(sa.column("birthday"))],
        unique=False,
        postgresql_where=sa.text("birthday IS NOT NULL"),
        sqlite_where=sa.text("birthday IS NOT NULL"),
    )


def downgrade():
    op.drop_index("ix_members_birthday_day", table_name="members")
    op.execute(
        "DELETE FROM journey_step_runs WHERE entry_id IN"
        " (SELECT id FROM journey_entries WHERE status = 'held_out')"
    )
    op.execute("DELETE FROM journey_entries WHERE status = 'held_out'")
    with op.batch_alter_table("journey_entries", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_journey_entries_known_status"), type_="check")
        batch_op.create_check_constraint(
            "known_status", "status IN ('active', 'completed', 'exited')"
        )
    with op.batch_alter_table("journeys", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_journeys_attribution_positive"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_journeys_holdout_range"), type_="check")
        batch_op.drop_column("attribution_days")
        batch_op.drop_column("holdout_pct")
