"""Tiers: thresholds on qualifying points or net spend over a rolling window, and benefits.

A member qualifies for a tier when the tier's basis (points earned minus points reversed,
or net spend, over the tier's own rolling window) reaches its threshold; their tier is the
highest-ranked tier they qualify for. Upgrades happen at once, downgrades only in the
periodic evaluation job (loyalty.tiers.jobs).
"""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, UTCDateTime, db
from loyalty.ledger.models import LedgerTransaction


class TierBasis(enum.StrEnum):
    QUALIFYING_POINTS = "qualifying_points"  # points earned (not the balance) in the window
    SPEND = "spend"  # net spend in minor units in the window


class Tier(db.Model):
    __tablename__ = "tiers"
    __table_args__ = (
        sa.CheckConstraint("threshold >= 0", name="threshold_not_negative"),
        sa.CheckConstraint("earn_multiplier_pct >= 100", name="multiplier_at_least_1x"),
        sa.CheckConstraint("window_days > 0", name="window_positive"),
        sa.CheckConstraint("basis IN ('qualifying_points', 'spend')", name="basis_known"),
        sa.CheckConstraint("basis <> 'spend' OR currency IS NOT NULL", name="spend_has_currency"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    rank: Mapped[int] = mapped_column(sa.Integer, unique=True)  # 0 = entry tier
    basis: Mapped[str] = mapped_column(sa.String(32), default=TierBasis.QUALIFYING_POINTS)
    threshold: Mapped[int] = mapped_column(BigInt, default=0)
    window_days: Mapped[int] = mapped_column(sa.Integer, default=365)
    # Net spend is counted in one currency (orders in others don't count toward the tier).
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    earn_multiplier_pct: Mapped[int] = mapped_column(sa.Integer, default=100)  # 150 = 1.5x
    benefits: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# The qualifying-points sum reads a member's EARN and REVERSE transactions inside the window;
# this index keeps it to one range scan per member. Declared here (the tiers need it), on the
# ledger's table.
sa.Index(
    "ix_ledger_transactions_member_time",
    LedgerTransaction.__table__.c.member_id,
    LedgerTransaction.__table__.c.created_at,
)
