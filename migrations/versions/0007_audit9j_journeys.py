"""journeys: the birthday scan's index

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
