"""The contract between the delivery pipeline and the channel providers.

The pipeline renders a message, hands an `OutgoingMessage` to the provider of its channel
outside any database transaction, and records the `SendResult`. A provider never touches
the database: it translates one send into the provider's API and its answer into one of a
few outcomes the pipeline knows how to act on. FCM, APNs or another SMS gateway are added
as another `Provider`, without touching the pipeline.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class Channel(enum.StrEnum):
    SMS = "sms"
    EMAIL = "email"
    PUSH = "push"


@dataclass(frozen=True)
class OutgoingMessage:
    """One rendered message for one destination."""

    message_id: int  # Omniloyal's message id; the idempotency key where the provider has one
    channel: Channel
    to: str  # E.164 phone number, email address, or the push subscription as JSON
    text: str  # SMS body, plain-text email part, or push body
    subject: str | None = None  # email subject or push title
    html: str | None = None  # HTML email part
    marketing: bool = False  # marketing mail carries List-Unsubscribe (RFC 8058)
    unsubscribe_url: str | None = None  # signed one-click URL (GET shows a page, POST acts)
    status_callback_url: str | None = None  # SMS delivery receipts
    ttl_seconds: int | None = None  # push time to live
    data: Mapping[str, str] = field(default_factory=dict)  # push payload extras, email headers


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"  # handed over; provider_message_id identifies it at the provider
    RETRY = "retry"  # transient (429, 5xx, timeouts): retry later, after retry_after if given
    FAILED = "failed"  # permanent (invalid or non-mobile number, refused address): no retry
    UNSUBSCRIBED = "unsubscribed"  # the recipient opted out at the provider: revoke consent
    GONE = "gone"  # the destination no longer exists (push 404/410): remove it


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    provider_message_id: str | None = None
    error_code: str | None = None  # the provider's own code, e.g. Twilio "21610"
    reason: str | None = None  # a short human-readable explanation (no personal data)
    retry_after_seconds: float | None = None


class Provider(Protocol):
    """Sends one message on one channel; safe to call from any worker thread."""

    name: str
    channel: Channel

    def send(self, message: OutgoingMessage) -> SendResult: ...
