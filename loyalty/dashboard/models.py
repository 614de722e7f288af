"""Dashboard users and the audit log (append-only, enforced by the database)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, JSONType, UTCDateTime, db
from loyalty.ledger.models import make_append_only

ROLES = ("admin", "marketer", "analyst", "support", "finance")
LOCALES = ("en", "zh_CN")


class DashboardUser(db.Model):
    __tablename__ = "dashboard_users"
    __table_args__ = (
        sa.CheckConstraint(
            "role IN ('admin', 'marketer', 'analyst', 'support', 'finance')", name="role_known"
        ),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(16))
    locale: Mapped[str] = mapped_column(sa.String(16), default="en")
    # Base32 TOTP secret (RFC 6238); None = no second factor for this user.
    totp_secret: Mapped[str | None] = mapped_column(sa.String(64))
    # Enrolment in progress: asked at sign-in only once a code from it was confirmed.
    totp_pending_secret: Mapped[str | None] = mapped_column(sa.String(64))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Flask-Login's user protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)

    @property
    def actor(self) -> str:
        """How audit entries and ledger transactions name this user."""
        return f"user:{self.id}:{self.email}"


class AuditEntry(db.Model):
    """Who changed what, when, why, with the state before and after. Never updated or
    deleted (triggers refuse it on both databases)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        sa.Index("ix_audit_log_target", "target_type", "target_id", "id"),
        sa.Index("ix_audit_log_actor", "actor", "id"),
        sa.Index("ix_audit_log_action", "action", "id"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(sa.String(300))
    source: Mapped[str] = mapped_column(sa.String(16))  # dashboard | api
    action: Mapped[str] = mapped_column(sa.String(100))
    target_type: Mapped[str | None] = mapped_column(sa.String(50))
    target_id: Mapped[str | None] = mapped_column(sa.String(100))
    before: Mapped[Any] = mapped_column(JSONType, nullable=True)
    after: Mapped[Any] = mapped_column(JSONType, nullable=True)
    request_id: Mapped[str | None] = mapped_column(sa.String(128))


class AuditReason(db.Model):
    """The why of an audit entry: free text that may name a person ("customer called,
    Jane Doe, lost receipt"), so it lives beside the append-only log where erasure can
    delete it (see audit.erase_reasons); the entry itself stays."""

    __tablename__ = "audit_reasons"

    entry_id: Mapped[int] = mapped_column(BigInt, sa.ForeignKey("audit_log.id"), primary_key=True)
    reason: Mapped[str] = mapped_column(sa.Text)


class DailyFigure(db.Model):
    """One figure of one UTC day for the overview (points issued, redemptions online...),
    added to incrementally by the refresh job from the rows after its cursor."""

    __tablename__ = "dashboard_daily_figures"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    metric: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    value: Mapped[int] = mapped_column(BigInt, default=0)


class StatsCursor(db.Model):
    """How far the refresh job has read a table (its last id counted)."""

    __tablename__ = "dashboard_stats_cursors"

    name: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInt, default=0)


class OverviewSnapshot(db.Model):
    """The member counts and liability, computed by the refresh job (the page reads the
    latest row: one index probe, whatever the member count)."""

    __tablename__ = "dashboard_overview_snapshots"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    figures: Mapped[Any] = mapped_column(JSONType)


make_append_only(AuditEntry.__table__)
