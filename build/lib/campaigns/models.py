"""Tables of the targeting layer: member profiles (per person) and segments.

`member_profiles` holds one row per person (a member that is not merged); its columns are
aggregates of the person's whole history (every id merged into them, the merge rule of
loyalty/members/resolution.py). Set-valued facts live in child tables keyed by person so a
segment reads them with an indexed EXISTS. Rows are derived: `campaigns.profiles` rewrites a
person's rows from the source tables, and can rebuild all of them.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, JSONType, UTCDateTime, db


class MemberProfile(db.Model):
    __tablename__ = "member_profiles"
    __table_args__ = (
        # The window refresh finds rows whose rolling windows lost an order since their
        # refresh: the oldest order still counted in each window, one index each.
        sa.Index("ix_member_profiles_window_30d", "window_30d_oldest_at"),
        sa.Index("ix_member_profiles_window_90d", "window_90d_oldest_at"),
        sa.Index("ix_member_profiles_window_365d", "window_365d_oldest_at"),
    )

    person_id: Mapped[int] = mapped_column(BigInt, sa.ForeignKey("members.id"), primary_key=True)
    points_balance: Mapped[int] = mapped_column(BigInt, default=0)
    orders_lifetime: Mapped[int] = mapped_column(sa.Integer, default=0)
    spend_lifetime_minor: Mapped[int] = mapped_column(BigInt, default=0)
    orders_30d: Mapped[int] = mapped_column(sa.Integer, default=0)
    spend_30d_minor: Mapped[int] = mapped_column(BigInt, default=0)
    orders_90d: Mapped[int] = mapped_column(sa.Integer, default=0)
    spend_90d_minor: Mapped[int] = mapped_column(BigInt, default=0)
    orders_365d: Mapped[int] = mapped_column(sa.Integer, default=0)
    spend_365d_minor: Mapped[int] = mapped_column(BigInt, default=0)
    online_orders: Mapped[int] = mapped_column(sa.Integer, default=0)  # channels online, app
    store_orders: Mapped[int] = mapped_column(sa.Integer, default=0)  # channels store, partner
    first_order_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_order_channel: Mapped[str | None] = mapped_column(sa.String(16))
    first_order_store_id: Mapped[str | None] = mapped_column(sa.String(64))
    last_order_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_order_channel: Mapped[str | None] = mapped_column(sa.String(16))
    last_order_store_id: Mapped[str | None] = mapped_column(sa.String(64))
    favourite_store_id: Mapped[str | None] = mapped_column(sa.String(64))
    # The oldest order inside each rolling window when the row was computed: once it
    # falls out of the window (`< now - window`), the window's figures are stale.
    window_30d_oldest_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_90d_oldest_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_365d_oldest_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tier_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # RFM quintiles (1-5, 5 best) among people with at least one order; scored nightly.
    rfm_recency: Mapped[int | None] = mapped_column(sa.SmallInteger)
    rfm_frequency: Mapped[int | None] = mapped_column(sa.SmallInteger)
    rfm_monetary: Mapped[int | None] = mapped_column(sa.SmallInteger)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MemberCategoryPurchase(db.Model):
    """A category the person bought on a channel: first and last time (net of full refunds
    and cancellations)."""

    __tablename__ = "member_category_purchases"
    __table_args__ = (sa.Index("ix_member_category_purchases_category", "category", "last_at"),)

    person_id: Mapped[int] = mapped_column(BigInt, sa.ForeignKey("members.id"), primary_key=True)
    category: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MemberTag(db.Model):
    """A tag on the person (from the members' `attributes["tags"]`, a list of strings)."""

    __tablename__ = "member_tags"
    __table_args__ = (sa.Index("ix_member_tags_tag", "tag"),)

    person_id: Mapped[int] = mapped_column(BigInt, sa.ForeignKey("members.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(sa.String(64), primary_key=True)


class SegmentKind(enum.StrEnum):
    DYNAMIC = "dynamic"  # the rule is evaluated whenever the segment is used
    STATIC = "static"  # a fixed list of people: a snapshot of a rule, or an uploaded CSV


class Segment(db.Model):
    __tablename__ = "segments"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('dynamic', 'static')", name="kind_known"),
        sa.CheckConstraint("kind = 'static' OR rule IS NOT NULL", name="dynamic_has_rule"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str | None] = mapped_column(sa.String(1000))
    kind: Mapped[str] = mapped_column(sa.String(16))
    rule: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Static segments: how many people the snapshot or upload holds, and when it was taken.
    snapshot_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SegmentMember(db.Model):
    """A person in a static segment (ids as they were at the snapshot: readers resolve
    them through the merge rule)."""

    __tablename__ = "segment_members"
    __table_args__ = (sa.Index("ix_segment_members_member_id", "member_id"),)

    segment_id: Mapped[int] = mapped_column(BigInt, sa.ForeignKey("segments.id"), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInt, sa.ForeignKey("members.id"), primary_key=True)
