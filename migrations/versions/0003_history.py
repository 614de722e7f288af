"""point lot indexes that match the batch jobs' predicates

The expiry, reminder and pending-release jobs look for lots by status
(`status = 'available'` / `'pending'`), which never proves the old partial indexes'
`remaining > 0`: PostgreSQL read the whole point_lots table on every run.

Revision ID: 0003_history
Revises: (chained in merge order; see down_revision)
Create Date: 2026-11-30 14:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003_history"
down_revision = "0003_security"
branch_labels = None
depends_on = None

INDEXES = {  # name: (column, new predicate)
    "ix_point_lots_expiry": ("expires_at", "status = 'available'"),
    "ix_point_lots_pending": ("available_at", "status = 'pending'"),
}


def _replace(predicate_of: dict[str, str]) -> None:
    for name, (column, _) in INDEXES.items():
        op.drop_index(name, table_name="point_lots")
        op.create_index(name, "point_lots", [column], postgresql_where=sa.text(predicate_of[name]))


def upgrade():
    _replace({name: predicate for name, (_, predicate) in INDEXES.items()})


def downgrade():
    _replace({name: "remaining > 0" for name in INDEXES})
