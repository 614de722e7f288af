"""Orders, their lines and refunds, earning rules and non-purchase activity events.

Invariants the database keeps:
- one order per (API client, external order id): the unique key that makes posting an
  order idempotent even when the same order arrives twice at once;
- one refund per (order, external refund id);
- money and points are never negative, and refunds never exceed the order total
  (`refunded_minor <= total_minor`), reversed points never exceed earned points;
- one activity per (member, kind, dedupe key): a sign-up bonus once, a check-in once a day...
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, JSONType, UTCDateTime, db


class OrderStatus(enum.StrEnum):
    POSTED = "posted"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


class RuleKind(enum.StrEnum):
    """What an earning rule does; see loyalty.earning.engine for the arithmetic."""

    BASE_RATE = "base_rate"  # `points` per `per_minor` minor units of the line net amount
    MULTIPLIER = "multiplier"  # multiplier_pct on base points (of matching lines)
    BONUS = "bonus"  # fixed bonus_points per matching unit, or per order without filters
    PROMOTION = "promotion"  # a time-boxed multiplier and/or bonus (starts_at/ends_at needed)
    ORDER_CAP = "order_cap"  # at most max_points from the rules per order
    EVENT_BONUS = "event_bonus"  # bonus_points for a non-purchase activity (activity_kind)


class ActivityKind(enum.StrEnum):
    SIGNUP = "signup"  # once per member
    PROFILE_COMPLETED = "profile_completed"  # once per member
    BIRTHDAY = "birthday"  # once per year (member's timezone)
    APP_CHECKIN = "app_checkin"  # once per day (member's timezone)
    REFERRAL = "referral"  # once per referred member


class Order(db.Model):
    __tablename__ = "orders"
    __table_args__ = (
        sa.UniqueConstraint("client_id", "external_id"),
        sa.CheckConstraint(
            "subtotal_minor >= 0 AND discount_minor >= 0 AND total_minor >= 0",
            name="money_not_negative",
        ),
        sa.CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= total_minor", name="refund_within_total"
        ),
        sa.CheckConstraint(
            "points_reversed >= 0 AND points_reversed <= points_earned",
            name="reversed_within_earned",
        ),
        sa.CheckConstraint("points_earned >= 0", name="points_not_negative"),
        sa.CheckConstraint(
            "status IN ('posted', 'partially_refunded', 'refunded', 'cancelled')",
            name="status_known",
        ),
        # Tier "net spend" and the member's order history read by member and time.
        sa.Index("ix_orders_member_occurred", "member_id", "occurred_at"),
        sa.Index("ix_orders_store_external", "store_id", "external_id"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    client_id: Mapped[int] = mapped_column(sa.ForeignKey("api_clients.id"))
    external_id: Mapped[str] = mapped_column(sa.String(128))
    channel: Mapped[str] = mapped_column(sa.String(16))
    store_id: Mapped[str | None] = mapped_column(sa.ForeignKey("stores.id"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    member_enrolled: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    currency: Mapped[str] = mapped_column(sa.String(3))
    subtotal_minor: Mapped[int] = mapped_column(BigInt)
    discount_minor: Mapped[int] = mapped_column(BigInt, default=0)
    total_minor: Mapped[int] = mapped_column(BigInt)
    refunded_minor: Mapped[int] = mapped_column(BigInt, default=0)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(24), default=OrderStatus.POSTED)
    points_earned: Mapped[int] = mapped_column(BigInt, default=0)
    points_reversed: Mapped[int] = mapped_column(BigInt, default=0)
    pending_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # SHA-256 of the canonical order content: the same order id with other content is a 409.
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    breakdown: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    coupons: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    ledger_transaction_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("ledger_transactions.id")
    )
    cancellation: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OrderLine(db.Model):
    __tablename__ = "order_lines"
    __table_args__ = (
        sa.UniqueConstraint("order_id", "index"),
        sa.CheckConstraint("quantity >= 1", name="quantity_positive"),
        sa.CheckConstraint("unit_price_minor >= 0", name="price_not_negative"),
        sa.CheckConstraint("discount_minor >= 0", name="discount_not_negative"),
        sa.CheckConstraint(
            "refunded_quantity >= 0 AND refunded_quantity <= quantity",
            name="refunded_quantity_in_range",
        ),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"))
    index: Mapped[int] = mapped_column(sa.Integer)
    sku: Mapped[str] = mapped_column(sa.String(64))
    category: Mapped[str | None] = mapped_column(sa.String(64))
    quantity: Mapped[int] = mapped_column(sa.Integer)
    unit_price_minor: Mapped[int] = mapped_column(BigInt)
    discount_minor: Mapped[int] = mapped_column(BigInt, default=0)
    refunded_quantity: Mapped[int] = mapped_column(sa.Integer, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInt, default=0)

    @property
    def net_minor(self) -> int:
        return self.quantity * self.unit_price_minor - self.discount_minor


class Refund(db.Model):
    __tablename__ = "refunds"
    __table_args__ = (
        sa.UniqueConstraint("order_id", "external_id"),
        sa.CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
        sa.CheckConstraint("points_reversed >= 0", name="points_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"), index=True)
    external_id: Mapped[str] = mapped_column(sa.String(128))
    client_id: Mapped[int | None] = mapped_column(sa.ForeignKey("api_clients.id"))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    amount_minor: Mapped[int] = mapped_column(BigInt)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # The proportional target for this refund; the four fields below say what happened to it.
    points_reversed: Mapped[int] = mapped_column(BigInt)
    revoked_pending: Mapped[int] = mapped_column(BigInt, default=0)
    revoked_available: Mapped[int] = mapped_column(BigInt, default=0)
    clawed_back: Mapped[int] = mapped_column(BigInt, default=0)
    forgiven: Mapped[int] = mapped_column(BigInt, default=0)
    # Not taken back because the order's own points had already expired (taken once).
    already_expired: Mapped[int] = mapped_column(BigInt, default=0, server_default="0")
    # Points that paid for the order (captured holds) given back by this refund.
    points_returned: Mapped[int] = mapped_column(BigInt, default=0, server_default="0")
    policy: Mapped[str] = mapped_column(sa.String(16))
    ledger_transaction_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("ledger_transactions.id")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EarningRule(db.Model):
    """One earning rule. Filters left empty (None) match everything."""

    __tablename__ = "earning_rules"
    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('base_rate', 'multiplier', 'bonus', 'promotion', 'order_cap', 'event_bonus')",
            name="kind_known",
        ),
        sa.CheckConstraint("points >= 0 AND per_minor >= 1", name="rate_valid"),
        sa.CheckConstraint("multiplier_pct >= 100", name="multiplier_at_least_1x"),
        sa.CheckConstraint("bonus_points >= 0", name="bonus_not_negative"),
        sa.CheckConstraint(
            "starts_at IS NULL OR ends_at IS NULL OR starts_at < ends_at", name="window_ordered"
        ),
        sa.Index("ix_earning_rules_active_kind", "active", "kind"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(16))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    channels: Mapped[list[str] | None] = mapped_column(JSONType)
    store_ids: Mapped[list[str] | None] = mapped_column(JSONType)
    regions: Mapped[list[str] | None] = mapped_column(JSONType)
    categories: Mapped[list[str] | None] = mapped_column(JSONType)
    skus: Mapped[list[str] | None] = mapped_column(JSONType)
    points: Mapped[int] = mapped_column(BigInt, default=0)
    per_minor: Mapped[int] = mapped_column(BigInt, default=1)
    multiplier_pct: Mapped[int] = mapped_column(sa.Integer, default=100)
    bonus_points: Mapped[int] = mapped_column(BigInt, default=0)
    min_spend_minor: Mapped[int | None] = mapped_column(BigInt)
    max_points: Mapped[int | None] = mapped_column(BigInt)
    activity_kind: Mapped[str | None] = mapped_column(sa.String(32))
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ActivityEvent(db.Model):
    """A non-purchase event that earned (or tried to earn) points, deduplicated by key."""

    __tablename__ = "activity_events"
    __table_args__ = (
        sa.UniqueConstraint("member_id", "kind", "dedupe_key"),
        sa.CheckConstraint("points >= 0", name="points_not_negative"),
        # A referred member brings their referrer a bonus once, whoever claims it.
        sa.UniqueConstraint("referred_member_id"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(sa.String(32))
    dedupe_key: Mapped[str] = mapped_column(sa.String(64))
    reference: Mapped[str | None] = mapped_column(sa.String(128))  # the client's own key
    referred_member_id: Mapped[int | None] = mapped_column(sa.ForeignKey("members.id"))
    client_id: Mapped[int | None] = mapped_column(sa.ForeignKey("api_clients.id"))
    # The member's timezone when it was recorded: the local day of a check-in is judged in
    # it as well as in the current one, so changing timezone opens no second check-in.
    timezone: Mapped[str | None] = mapped_column(sa.String(64))
    points: Mapped[int] = mapped_column(BigInt, default=0)
    breakdown: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    ledger_transaction_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("ledger_transactions.id")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
