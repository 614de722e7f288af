"""targeting: member profiles, category purchases, tags, segments

Revision ID: 0004_segments
Revises: 0003_history
Create Date: 2026-11-30 15:00:00

The profile tables are derived data: after upgrading, run
`omniloyal campaigns rebuild-profiles` once (the outbox consumer keeps them current after).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import loyalty.db

revision = "0004_segments"
down_revision = "0003_history"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = loyalty.db.UTCDateTime(timezone=True)


def _person_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["person_id"], ["members.id"], name=op.f(f"fk_{table}_person_id_members")
    )


def upgrade():
    op.create_table(
        "member_profiles",
        sa.Column("person_id", BigInt, nullable=False),
        sa.Column("points_balance", BigInt, nullable=False),
        sa.Column("orders_lifetime", sa.Integer(), nullable=False),
        sa.Column("spend_lifetime_minor", BigInt, nullable=False),
        sa.Column("orders_30d", sa.Integer(), nullable=False),
        sa.Column("spend_30d_minor", BigInt, nullable=False),
        sa.Column("orders_90d", sa.Integer(), nullable=False),
        sa.Column("spend_90d_minor", BigInt, nullable=False),
        sa.Column("orders_365d", sa.Integer(), nullable=False),
        sa.Column("spend_365d_minor", BigInt, nullable=False),
        sa.Column("online_orders", sa.Integer(), nullable=False),
        sa.Column("store_orders", sa.Integer(), nullable=False),
        sa.Column("first_order_at", UTC, nullable=True),
        sa.Column("first_order_channel", sa.String(length=16), nullable=True),
        sa.Column("first_order_store_id", sa.String(length=64), nullable=True),
        sa.Column("last_order_at", UTC, nullable=True),
        sa.Column("last_order_channel", sa.String(length=16), nullable=True),
        sa.Column("last_order_store_id", sa.String(length=64), nullable=True),
        sa.Column("favourite_store_id", sa.String(length=64), nullable=True),
        sa.Column("window_30d_oldest_at", UTC, nullable=True),
        sa.Column("window_90d_oldest_at", UTC, nullable=True),
        sa.Column("window_365d_oldest_at", UTC, nullable=True),
        sa.Column("tier_since", UTC, nullable=True),
        sa.Column("rfm_recency", sa.SmallInteger(), nullable=True),
        sa.Column("rfm_frequency", sa.SmallInteger(), nullable=True),
        sa.Column("rfm_monetary", sa.SmallInteger(), nullable=True),
        sa.Column("refreshed_at", UTC, nullable=False),
        _person_fk("member_profiles"),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_member_profiles")),
    )
    for days in (30, 90, 365):
        op.create_index(
            f"ix_member_profiles_window_{days}d", "member_profiles", [f"window_{days}d_oldest_at"]
        )
    op.create_table(
        "member_category_purchases",
        sa.Column("person_id", BigInt, nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("first_at", UTC, nullable=False),
        sa.Column("last_at", UTC, nullable=False),
        _person_fk("member_category_purchases"),
        sa.PrimaryKeyConstraint(
            "person_id", "category", "channel", name=op.f("pk_member_category_purchases")
        ),
    )
    op.create_index(
        "ix_member_category_purchases_category",
        "member_category_purchases",
        ["category", "last_at"],
    )
    op.create_table(
        "member_tags",
        sa.Column("person_id", BigInt, nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        _person_fk("member_tags"),
        sa.PrimaryKeyConstraint("person_id", "tag", name=op.f("pk_member_tags")),
    )
    op.create_index("ix_member_tags_tag", "member_tags", ["tag"])
    op.create_table(
        "segments",
        sa.Column("id", BigInt, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("snapshot_at", UTC, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.CheckConstraint("kind IN ('dynamic', 'static')", name=op.f("ck_segments_kind_known")),
        sa.CheckConstraint(
            "kind = 'static' OR rule IS NOT NULL", name=op.f("ck_segments_dynamic_has_rule")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
    )
    op.create_table(
        "segment_members",
        sa.Column("segment_id", BigInt, nullable=False),
        sa.Column("member_id", BigInt, nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_segment_members_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name=op.f("fk_segment_members_segment_id_segments")
        ),
        sa.PrimaryKeyConstraint("segment_id", "member_id", name=op.f("pk_segment_members")),
    )
    op.create_index("ix_segment_members_member_id", "segment_members", ["member_id"])


def downgrade():
    op.drop_index("ix_segment_members_member_id", table_name="segment_members")
    op.drop_table("segment_members")
    op.drop_table("segments")
    op.drop_index("ix_member_tags_tag", table_name="member_tags")
    op.drop_table("member_tags")
    op.drop_index("ix_member_category_purchases_category", table_name="member_category_purchases")
    op.drop_table("member_category_purchases")
    for days in (30, 90, 365):
        op.drop_index(f"ix_member_profiles_window_{days}d", table_name="member_profiles")
    op.drop_table("member_profiles")
