"""The outbox tables: events (one per domain change) and deliveries (one per event and consumer).

`outbox_events` is written in the business transaction; `dispatched_at` is set when the relay
has created the event's deliveries. `outbox_deliveries` holds each consumer's own state for
the event, so one failing consumer never redelivers to the others.

Every status filter is written as a SQL literal (`status = 'pending'`), never a bound
parameter: a partial index on `status = 'pending'` is usable by a generic (prepared) plan only
when the predicate is in the statement text.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, JSONType, UTCDateTime, db


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # due at next_attempt_at (or in flight until then: the lease)
    DONE = "done"  # the consumer succeeded; never run again for this event
    DEAD = "dead"  # max attempts reached; waits for an operator's retry


def status_is(column: Any, status: DeliveryStatus) -> sa.ColumnElement[bool]:
    """`column = '<status>'` with the value inline (see the module docstring)."""
    return column == sa.literal_column(f"'{status.value}'")


class OutboxEvent(db.Model):
    __tablename__ = "outbox_events"
    __table_args__ = (
        # The relay's fan-out reads undispatched events in id order: a small partial index.
        sa.Index(
            "ix_outbox_events_undispatched",
            "id",
            postgresql_where=sa.text("dispatched_at IS NULL"),
            sqlite_where=sa.text("dispatched_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    topic: Mapped[str] = mapped_column(sa.String(64), index=True)
    member_id: Mapped[int | None] = mapped_column(BigInt, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the relay created this event's deliveries; the purge reads the oldest first.
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class OutboxDelivery(db.Model):
    """One consumer's delivery of one event: its attempts, next attempt time and last error."""

    __tablename__ = "outbox_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "consumer"),
        sa.CheckConstraint("status IN ('pending', 'done', 'dead')", name="status_known"),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # What is due for a consumer: the claim's range scan.
        sa.Index(
            "ix_outbox_deliveries_due",
            "consumer",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
        # A member's unfinished deliveries per consumer, in event order: "is an earlier
        # event of this member still pending for this consumer?" is one index probe.
        sa.Index(
            "ix_outbox_deliveries_member_queue",
            "consumer",
            "member_id",
            "event_id",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
        # Dead letters, listed by id for the admin API.
        sa.Index(
            "ix_outbox_deliveries_dead",
            "id",
            postgresql_where=sa.text("status = 'dead'"),
            sqlite_where=sa.text("status = 'dead'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    event_id: Mapped[int] = mapped_column(BigInt, sa.ForeignKey("outbox_events.id"))
    consumer: Mapped[str] = mapped_column(sa.String(100))
    # Copied from the event: per-member ordering is decided on this table alone.
    member_id: Mapped[int | None] = mapped_column(BigInt)
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set at each claim; a result is recorded only by the worker holding the current token.
    claim_token: Mapped[str | None] = mapped_column(sa.String(32))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
