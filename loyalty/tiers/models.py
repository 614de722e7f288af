from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, UTCDateTime, db


class TierBasis(enum.StrEnum):
    QUALIFYING_POINTS = "qualifying_points"  # points earned (not the balance) in the window
    SPEND = "spend"  # net spend in minor units in the window


class Tier(db.Model):
    __tablename__ = "tiers"
    __table_args__ = (
        sa.CheckConstraint("threshold >= 0", name="threshold_not_negative"),
        sa.CheckConstraint("earn_multiplier_pct >= 100", name="multiplier_at_least_1x"),
        sa.CheckConstraint("window_days > 0", name="window_positive"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    rank: Mapped[int] = mapped_column(sa.Integer, unique=True)  # 0 = entry tier
    basis: Mapped[str] = mapped_column(sa.String(32), default=TierBasis.QUALIFYING_POINTS)
    threshold: Mapped[int] = mapped_column(BigInt, default=0)
    window_days: Mapped[int] = mapped_column(sa.Integer, default=365)
    earn_multiplier_pct: Mapped[int] = mapped_column(sa.Integer, default=100)  # 150 = 1.5x
    benefits: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
