"""merges: one hop from any id to its person, imported qualifying points, merge transit

- members.merged_into_id is indexed (a person's history ids are one indexed query) and
  every existing chain a -> b -> c is repointed to a -> c (the merge rule keeps it so).
- member_imports.qualifying_points: what an imported row brings toward tiers; rows imported
  before this revision count their opening points (the importer's default).
- the `merges` program account: points in transit between a merged member's outgoing
  transaction and the survivor's incoming one.

Revision ID: 0003_merges
Revises: (chained in merge order; see down_revision)
Create Date: 2026-11-30 13:40:00

"""

import sqlalchemy as sa
from alembic import op

import loyalty.db  # noqa: F401 - custom column types

# revision identifiers, used by Alembic.
revision = "0003_merges"
down_revision = "0002"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_members_merged_into_id"), ["merged_into_id"])
    with op.batch_alter_table("member_imports", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("qualifying_points", BIGINT, nullable=False, server_default="0")
        )
    op.execute("UPDATE member_imports SET qualifying_points = opening_points")
    # Repoint chains until every merged member names a member that is not merged itself.
    while True:
        repointed = (
            op.get_bind()
            .execute(
                sa.text(
                    "UPDATE members SET merged_into_id = (SELECT s.merged_into_id FROM members s"
                    " WHERE s.id = members.merged_into_id) WHERE merged_into_id IN"
                    " (SELECT id FROM members WHERE merged_into_id IS NOT NULL)"
                )
            )
            .rowcount
        )
        if not repointed:
            break
    op.execute(
        "INSERT INTO ledger_accounts (kind, code, balance, held) SELECT 'program', 'merges', 0, 0"
        " WHERE NOT EXISTS (SELECT 1 FROM ledger_accounts WHERE code = 'merges')"
    )


def downgrade():
    # The transit account stays when entries name it (the ledger is append-only).
    op.execute(
        "DELETE FROM ledger_accounts WHERE code = 'merges' AND NOT EXISTS (SELECT 1 FROM"
        " ledger_entries e WHERE e.from_account_id = ledger_accounts.id"
        " OR e.to_account_id = ledger_accounts.id)"
    )
    with op.batch_alter_table("member_imports", schema=None) as batch_op:
        batch_op.drop_column("qualifying_points")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_members_merged_into_id"))
