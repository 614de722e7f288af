"""Messages and their state changes, templates' stored versions, and the recording provider's
log. Consent has its own models in `notifications/consent.py`.

A message is one thing said to one member on one channel. It is created in the transaction
of its cause (or by the outbox consumer reacting to it) under a UNIQUE dedupe key, so a
cause produces it at most once, and it carries ids and amounts only: the destination and
the text are resolved and rendered when it is sent (an erased member gets nothing).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, JSONType, UTCDateTime, db


class MessageState(enum.StrEnum):
    QUEUED = "queued"  # waiting for its first send
    DEFERRED = "deferred"  # waiting: quiet hours, a retry's backoff, a rate limit
    SENDING = "sending"  # claimed: the provider is being called (outside any transaction)
    SENT = "sent"  # the provider accepted it
    DELIVERED = "delivered"  # the provider reported delivery (status callback)
    FAILED = "failed"  # permanent failure, or retries exhausted
    SUPPRESSED = "suppressed"  # not sent on purpose: consent, frequency cap, no destination


DUE_STATES = (MessageState.QUEUED.value, MessageState.DEFERRED.value)
FINAL_STATES = frozenset(
    {MessageState.DELIVERED, MessageState.FAILED, MessageState.SUPPRESSED, MessageState.SENT}
)

# Partial-index predicates, written once (the queries use loyalty.db.constant for them).
_DUE = "state IN ('queued', 'deferred')"
_SENDING = "state = 'sending'"


class Message(db.Model):
    __tablename__ = "messages"
    __table_args__ = (
        sa.UniqueConstraint("dedupe_key"),
        sa.CheckConstraint(
            "state IN ('queued', 'deferred', 'sending', 'sent', 'delivered', 'failed', "
            "'suppressed')",
            name="state_known",
        ),
        sa.CheckConstraint("purpose IN ('transactional', 'marketing')", name="purpose_known"),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # The send job's claim: due messages, oldest due first.
        sa.Index(
            "ix_messages_due",
            "next_attempt_at",
            postgresql_where=sa.text(_DUE),
            sqlite_where=sa.text(_DUE),
        ),
        # Recovery of messages left in `sending` by a worker that died.
        sa.Index(
            "ix_messages_sending",
            "sending_since",
            postgresql_where=sa.text(_SENDING),
            sqlite_where=sa.text(_SENDING),
        ),
        # Member history pages (newest first) and the marketing frequency cap.
        sa.Index("ix_messages_member_id_id", "member_id", "id"),
        sa.Index("ix_messages_member_purpose_sent", "member_id", "purpose", "sent_at"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    member_id: Mapped[int | None] = mapped_column(sa.ForeignKey("members.id"))
    channel: Mapped[str] = mapped_column(sa.String(16))
    template: Mapped[str] = mapped_column(sa.String(100))
    template_version: Mapped[int | None] = mapped_column(sa.Integer)  # 0: the shipped default
    locale: Mapped[str | None] = mapped_column(sa.String(16))
    purpose: Mapped[str] = mapped_column(sa.String(16))
    dedupe_key: Mapped[str] = mapped_column(sa.String(200))
    variables: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Given at queue time only to override the member's contact (login codes, test sends);
    # otherwise resolved from the member's identities when sent.
    destination_override: Mapped[str | None] = mapped_column(sa.String(2000))
    destination: Mapped[str | None] = mapped_column(sa.String(2000))
    subject: Mapped[str | None] = mapped_column(sa.String(500))
    body: Mapped[str | None] = mapped_column(sa.Text)
    html: Mapped[str | None] = mapped_column(sa.Text)
    sms_segments: Mapped[int | None] = mapped_column(sa.Integer)
    state: Mapped[str] = mapped_column(sa.String(16), default=MessageState.QUEUED.value)
    reason: Mapped[str | None] = mapped_column(sa.String(300))
    provider: Mapped[str | None] = mapped_column(sa.String(50))
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(100))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sending_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MessageTransition(db.Model):
    """One state change of a message, with its time and reason (the message's audit trail)."""

    __tablename__ = "message_transitions"
    __table_args__ = (sa.Index("ix_message_transitions_message_id_id", "message_id", "id"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("messages.id", ondelete="CASCADE"))
    to_state: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str | None] = mapped_column(sa.String(300))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class MessageTemplate(db.Model):
    """A stored version of a template (key, channel, locale). The highest version is used;
    without one, the default shipped in templates/notifications/ (version 0)."""

    __tablename__ = "message_templates"
    __table_args__ = (sa.UniqueConstraint("key", "channel", "locale", "version"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(100))
    channel: Mapped[str] = mapped_column(sa.String(16))
    locale: Mapped[str] = mapped_column(sa.String(16))
    version: Mapped[int] = mapped_column(sa.Integer)
    source: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(sa.String(200))


class RecordedMessage(db.Model):
    """What the recording provider (the embedded default) 'sent': one row per message id.

    The provider's idempotency key is the message id: a second send of the same message
    (a worker that died after the call and before recording it) adds to `calls` and records
    nothing new, as a provider honouring an idempotency key would."""

    __tablename__ = "recorded_messages"
    __table_args__ = (sa.UniqueConstraint("message_id"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInt)
    channel: Mapped[str] = mapped_column(sa.String(16))
    destination: Mapped[str | None] = mapped_column(sa.String(2000))
    subject: Mapped[str | None] = mapped_column(sa.String(500))
    body: Mapped[str | None] = mapped_column(sa.Text)
    html: Mapped[str | None] = mapped_column(sa.Text)
    marketing: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    calls: Mapped[int] = mapped_column(sa.Integer, default=1)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
