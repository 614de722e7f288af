"""Tables of journeys (versions, members' entries and step runs), store events (online to
offline) and referrals.

Every member-scoped row here is owned by its member: written under the member's row lock
(lock order step 4), moved to the survivor by a merge step, erased with the person.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, JSONType, UTCDateTime, db


class Journey(db.Model):
    """A journey: its trigger, re-entry rule and current version. `status`: draft, active,
    paused, archived. Editing steps makes a new version; members in flight keep theirs."""

    __tablename__ = "journeys"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'paused', 'archived')", name="known_status"
        ),
        sa.CheckConstraint("reentry IN ('never', 'after_days', 'always')", name="known_reentry"),
        sa.CheckConstraint("holdout_pct >= 0 AND holdout_pct <= 50", name="holdout_range"),
        sa.CheckConstraint("attribution_days >= 1", name="attribution_positive"),
        # Each outbox event and scan asks "which active journeys does this trigger start?"
        sa.Index("ix_journeys_trigger", "trigger", "status"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(32), default="journey")  # or an O2O template
    status: Mapped[str] = mapped_column(sa.String(16), default="draft")
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    trigger: Mapped[str] = mapped_column(sa.String(32))
    trigger_days: Mapped[int | None] = mapped_column(sa.Integer)  # no_purchase: N days
    segment_id: Mapped[int | None] = mapped_column(BigInt)  # audience of a `segment` trigger
    reentry: Mapped[str] = mapped_column(sa.String(16), default="never")
    reentry_days: Mapped[int | None] = mapped_column(sa.Integer)
    # The control group, as for campaigns: a deterministic share of the people a trigger
    # brings in is recorded (entry status `held_out`) and never messaged, so results
    # compare who went through the journey with who didn't, over `attribution_days`.
    holdout_pct: Mapped[int] = mapped_column(sa.Integer, default=10, server_default="10")
    attribution_days: Mapped[int] = mapped_column(sa.Integer, default=7, server_default="7")
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JourneyVersion(db.Model):
    __tablename__ = "journey_versions"
    __table_args__ = (sa.UniqueConstraint("journey_id", "version"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    journey_id: Mapped[int] = mapped_column(sa.ForeignKey("journeys.id"))
    version: Mapped[int] = mapped_column(sa.Integer)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JourneyEntry(db.Model):
    """One member's pass through one version of a journey: the step to run next and when.

    `cause_key` names what brought them in (an outbox event, a birthday of a year, a scan,
    an audience): unique per journey, so a redelivered cause enters nobody twice. A person
    in the journey's control group gets an entry `held_out` that runs no step."""

    __tablename__ = "journey_entries"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('active', 'completed', 'exited', 'held_out')", name="known_status"
        ),
        sa.UniqueConstraint("journey_id", "cause_key"),
        sa.Index("ix_journey_entries_member", "member_id", "journey_id"),
        # The dashboard's members per step: an index-only count per journey.
        sa.Index("ix_journey_entries_step", "journey_id", "status", "step_index"),
        # The scheduler's due scan: a range of this index, oldest first.
        sa.Index(
            "ix_journey_entries_due",
            "next_run_at",
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    journey_id: Mapped[int] = mapped_column(sa.ForeignKey("journeys.id"))
    version: Mapped[int] = mapped_column(sa.Integer)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    cause_key: Mapped[str] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    step_index: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    exit_reason: Mapped[str | None] = mapped_column(sa.String(64))
    state: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # e.g. coupon code ids


class JourneyStepRun(db.Model):
    """A step that ran for an entry: at most one per (entry, step), the exactly-once key."""

    __tablename__ = "journey_step_runs"
    __table_args__ = (sa.UniqueConstraint("entry_id", "step_index"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    entry_id: Mapped[int] = mapped_column(sa.ForeignKey("journey_entries.id"))
    step_index: Mapped[int] = mapped_column(sa.Integer)
    step_type: Mapped[str] = mapped_column(sa.String(16))
    outcome: Mapped[str] = mapped_column(sa.String(32))
    next_step: Mapped[int | None] = mapped_column(sa.Integer)  # None: the entry ended
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    ran_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StoreEvent(db.Model):
    """An in-store event members reserve a place at (a launch, a workshop)."""

    __tablename__ = "store_events"
    __table_args__ = (
        sa.CheckConstraint("reserved >= 0 AND reserved <= capacity", name="within_capacity"),
        sa.CheckConstraint("capacity >= 1", name="capacity_positive"),
        sa.CheckConstraint("checkin_points >= 0", name="points_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    store_id: Mapped[str] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    journey_id: Mapped[int | None] = mapped_column(BigInt)  # the launch announcing it
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    capacity: Mapped[int] = mapped_column(sa.Integer)
    reserved: Mapped[int] = mapped_column(sa.Integer, default=0)
    checkin_points: Mapped[int] = mapped_column(sa.Integer, default=0)
    attribution_days: Mapped[int] = mapped_column(sa.Integer, default=7)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EventReservation(db.Model):
    __tablename__ = "event_reservations"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('reserved', 'cancelled', 'checked_in')", name="known_status"
        ),
        sa.UniqueConstraint("event_id", "member_id"),
        sa.Index("ix_event_reservations_member", "member_id"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("store_events.id"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    status: Mapped[str] = mapped_column(sa.String(16), default="reserved")
    reserved_at: Mapped[datetime] = mapped_column(UTCDateTime)
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checkin_transaction_id: Mapped[int | None] = mapped_column(BigInt)
    attributed_order_id: Mapped[int | None] = mapped_column(BigInt)
    attributed_minor: Mapped[int | None] = mapped_column(BigInt)


class ReferralCode(db.Model):
    __tablename__ = "referral_codes"

    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(16), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Referral(db.Model):
    """A new member who joined through a referrer's code. `status`: pending (no first
    purchase yet), rewarded, refused (an abuse check or the referrer's cap)."""

    __tablename__ = "referrals"
    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'rewarded', 'refused')", name="known_status"),
        sa.Index("ix_referrals_referrer", "referrer_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    referrer_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    referee_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(sa.String(64))
    order_id: Mapped[int | None] = mapped_column(BigInt)  # the first purchase that rewarded
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rewarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReferralMark(db.Model):
    """A digest (HMAC, never the value) of a phone, card or device fingerprint a member used,
    kept for the self-referral checks: a referee sharing one with the referrer is refused."""

    __tablename__ = "referral_marks"
    __table_args__ = (sa.Index("ix_referral_marks_digest", "kind", "digest"),)

    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


def _lapsed_scan_index() -> sa.Index:
    """The no-purchase trigger reads a range of last purchase times (campaigns.triggers)."""
    from campaigns.models import MemberProfile

    return sa.Index("ix_member_profiles_last_order", MemberProfile.__table__.c.last_order_at)


LAPSED_SCAN_INDEX = _lapsed_scan_index()
