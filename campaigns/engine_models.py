"""Tables of the campaign engine: campaigns, their content versions, runs and recipients.

A campaign sends one audience (a segment) an offer and a message per member on the first
channel the member consents to and can be reached on. Each occurrence of its schedule is a
*run* (one for "now" or "at", one per slot for recurring ones); a run snapshots the
audience into `campaign_recipients` at its start, one row per person, and the fan-out
moves each row from `pending` exactly once (a conditional UPDATE in the chunk's
transaction, together with the code issued and the message queued).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, JSONType, UTCDateTime, db


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"  # being edited; nothing scheduled
    SCHEDULED = "scheduled"  # launched; waits for its next run time
    RUNNING = "running"  # a run is fanning out
    PAUSED = "paused"  # fan-out stopped; resume continues where it stopped
    COMPLETED = "completed"  # every run done (one-off) or the recurrence ended
    CANCELLED = "cancelled"  # stopped for good; pending recipients are never sent


class OfferKind(enum.StrEnum):
    NONE = "none"
    COUPON = "coupon"  # a unique code of a coupons offer, issued per recipient at send time
    POINTS = "points"  # bonus points credited through the ledger at send time
    MULTIPLIER = "multiplier"  # an earn multiplier for recipients during a window


class ScheduleKind(enum.StrEnum):
    NOW = "now"
    AT = "at"
    DAILY = "daily"
    WEEKLY = "weekly"
    CRON = "cron"
    # Event-triggered campaigns ("trigger") are journeys: see the journeys package.


class RecipientStatus(enum.StrEnum):
    PENDING = "pending"  # snapshotted, not fanned out yet
    QUEUED = "queued"  # a message was handed to notifications (its own state says the rest)
    SUPPRESSED = "suppressed"  # not messaged: no consent, not reachable, inactive (reason)
    HELD_OUT = "held_out"  # the control group: never messaged, measured
    CANCELLED = "cancelled"  # the campaign was cancelled before the row was reached


STATUSES = tuple(s.value for s in CampaignStatus)
_PENDING = "status = 'pending'"


class Campaign(db.Model):
    __tablename__ = "campaigns"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled')",
            name="status_known",
        ),
        sa.CheckConstraint(
            "offer_kind IN ('none', 'coupon', 'points', 'multiplier')", name="offer_kind_known"
        ),
        sa.CheckConstraint(
            "schedule_kind IN ('now', 'at', 'daily', 'weekly', 'cron')", name="schedule_known"
        ),
        sa.CheckConstraint("holdout_pct >= 0 AND holdout_pct <= 50", name="holdout_range"),
        sa.CheckConstraint("attribution_days >= 1", name="attribution_positive"),
        sa.CheckConstraint("offer_kind <> 'coupon' OR offer_id IS NOT NULL", name="coupon_offer"),
        sa.CheckConstraint(
            "offer_kind <> 'points' OR bonus_points > 0", name="points_offer_positive"
        ),
        # The scheduler's pick: scheduled campaigns whose next run is due.
        sa.Index("ix_campaigns_status_next_run", "status", "next_run_at"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str | None] = mapped_column(sa.String(1000))
    status: Mapped[str] = mapped_column(sa.String(16), default=CampaignStatus.DRAFT.value)
    segment_id: Mapped[int] = mapped_column(BigInt, sa.ForeignKey("segments.id"))
    offer_kind: Mapped[str] = mapped_column(sa.String(16), default=OfferKind.NONE.value)
    offer_id: Mapped[int | None] = mapped_column(BigInt, sa.ForeignKey("coupon_offers.id"))
    bonus_points: Mapped[int] = mapped_column(BigInt, default=0)
    multiplier_pct: Mapped[int] = mapped_column(sa.Integer, default=100)
    multiplier_days: Mapped[int] = mapped_column(sa.Integer, default=0)
    channel_order: Mapped[list[str]] = mapped_column(JSONType)
    holdout_pct: Mapped[int] = mapped_column(sa.Integer, default=10)
    attribution_days: Mapped[int] = mapped_column(sa.Integer, default=7)
    schedule_kind: Mapped[str] = mapped_column(sa.String(16), default=ScheduleKind.NOW.value)
    schedule_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    schedule_cron: Mapped[str | None] = mapped_column(sa.String(100))
    schedule_timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    schedule_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)  # current content version
    runs_started: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CampaignVersion(db.Model):
    """The campaign's content (variants, templates per channel) as of one version. A
    recipient records the version its message was made from."""

    __tablename__ = "campaign_versions"

    campaign_id: Mapped[int] = mapped_column(
        BigInt, sa.ForeignKey("campaigns.id"), primary_key=True
    )
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    content: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CampaignTransition(db.Model):
    """One lifecycle change (the audit trail a marketer's manager asks for)."""

    __tablename__ = "campaign_transitions"
    __table_args__ = (sa.Index("ix_campaign_transitions_campaign_id_id", "campaign_id", "id"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigInt, sa.ForeignKey("campaigns.id"))
    from_status: Mapped[str] = mapped_column(sa.String(16))
    to_status: Mapped[str] = mapped_column(sa.String(16))
    actor: Mapped[str] = mapped_column(sa.String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class CampaignRun(db.Model):
    """One occurrence of the campaign's schedule: its audience snapshot and fan-out."""

    __tablename__ = "campaign_runs"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "number"),
        sa.CheckConstraint(
            "status IN ('running', 'completed', 'cancelled')", name="run_status_known"
        ),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigInt, sa.ForeignKey("campaigns.id"))
    number: Mapped[int] = mapped_column(sa.Integer)  # 1, 2, ... (the "step" of dedupe keys)
    status: Mapped[str] = mapped_column(sa.String(16), default="running")
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    audience: Mapped[int] = mapped_column(sa.Integer, default=0)
    held_out: Mapped[int] = mapped_column(sa.Integer, default=0)


class CampaignRecipient(db.Model):
    """One person of a run's audience (the member id resolved to the person at the
    snapshot, one row per person). Ids and outcomes only: no personal data."""

    __tablename__ = "campaign_recipients"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('pending', 'queued', 'suppressed', 'held_out', 'cancelled')",
            name="recipient_status_known",
        ),
        # The fan-out's claim: a run's pending people in id order.
        sa.Index(
            "ix_campaign_recipients_pending",
            "run_id",
            "member_id",
            postgresql_where=sa.text(_PENDING),
            sqlite_where=sa.text(_PENDING),
        ),
        # Results per campaign; a member's campaigns (export, merge, attribution).
        sa.Index("ix_campaign_recipients_campaign", "campaign_id", "status"),
        sa.Index("ix_campaign_recipients_member", "member_id"),
        sa.Index("ix_campaign_recipients_message", "message_id"),
    )

    run_id: Mapped[int] = mapped_column(BigInt, sa.ForeignKey("campaign_runs.id"), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInt, sa.ForeignKey("members.id"), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigInt, sa.ForeignKey("campaigns.id"))
    status: Mapped[str] = mapped_column(sa.String(16))
    variant: Mapped[str | None] = mapped_column(sa.String(32))
    version: Mapped[int | None] = mapped_column(sa.Integer)
    channel: Mapped[str | None] = mapped_column(sa.String(16))
    reason: Mapped[str | None] = mapped_column(sa.String(300))
    message_id: Mapped[int | None] = mapped_column(BigInt)
    code_id: Mapped[int | None] = mapped_column(BigInt)
    points_transaction_id: Mapped[int | None] = mapped_column(BigInt)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
