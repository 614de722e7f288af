"""Webhook subscriptions (an integrator's URL and the topics it wants) and their deliveries.

A subscription's secret is kept as it was issued (it has to sign every delivery, so it can't
be a digest); it is shown once, at creation or rotation. Deliveries hold the exact body that
is signed and sent (ids and amounts, never personal data), so a retry sends the same bytes.
"""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, JSONType, UTCDateTime, db


class SubscriptionStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # by an operator, or after too many deliveries failed in a row


class WebhookDeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # due at next_attempt_at (in flight until then while claimed)
    SUCCEEDED = "succeeded"  # the receiver answered 2xx
    FAILED = "failed"  # every allowed attempt failed; an operator may retry it


class WebhookSubscription(db.Model):
    __tablename__ = "webhook_subscriptions"
    __table_args__ = (
        sa.CheckConstraint("status IN ('active', 'disabled')", name="status_known"),
        sa.CheckConstraint("consecutive_failures >= 0", name="failures_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    url: Mapped[str] = mapped_column(sa.String(2000))
    topics: Mapped[list[str]] = mapped_column(JSONType)
    description: Mapped[str | None] = mapped_column(sa.String(500))
    secret: Mapped[str] = mapped_column(sa.String(100))
    # After a rotation the old secret also signs (a second v1=) until it expires.
    previous_secret: Mapped[str | None] = mapped_column(sa.String(100))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(16))
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(300))
    # Deliveries that ended `failed` since the last success: too many disables it.
    consecutive_failures: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(db.Model):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # One delivery per subscription and outbox event: the consumer dedupes by event id.
        sa.UniqueConstraint("subscription_id", "event_id"),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status_known"),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        sa.Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
        sa.Index("ix_webhook_deliveries_subscription", "subscription_id", "id"),
        sa.Index("ix_webhook_deliveries_done_at", "done_at"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        BigInt, sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event_id: Mapped[int] = mapped_column(BigInt)  # outbox events are purged; no foreign key
    topic: Mapped[str] = mapped_column(sa.String(64))
    body: Mapped[str] = mapped_column(sa.Text)  # the exact JSON that is signed and sent
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(sa.String(32))
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(sa.Integer)
    last_response_body: Mapped[str | None] = mapped_column(sa.String(1000))
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
