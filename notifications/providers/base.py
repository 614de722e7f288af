"""The contract between the delivery pipeline and the channel providers.

The pipeline renders a message, hands an `OutgoingMessage` to the provider of its channel
outside any database transaction, and records the `SendResult`. A provider never touches
the database: it translates one send into the provider's API and its answer into one of a
few outcomes the pipeline knows how to act on. FCM, APNs or another SMS gateway are added
as another `Provider`, without touching the pipeline.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
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
    member_id: int | None = None  # the person it goes to (their id now, after any merge)
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


log = logging.getLogger(__name__)


class Provider(Protocol):
    """Sends messages on one channel; safe to call from any worker thread.

    `send_many` sends a chunk and answers one result per message, in order: a provider
    with a cheaper way than one call per message implements it natively (one SMTP
    connection per chunk, one INSERT for the recording provider); the others inherit the
    loop from `OneByOne`, and `send_many()` below loops over `send` for any provider that
    has no `send_many` at all."""

    name: str
    channel: Channel

    def send(self, message: OutgoingMessage) -> SendResult: ...

    def send_many(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]: ...


def _guarded(provider: object, message: OutgoingMessage) -> SendResult:
    """One send; a provider raising is a transient failure (retried with backoff)."""
    try:
        return provider.send(message)  # type: ignore[attr-defined,no-any-return]
    except Exception as error:  # the provider's bug or a network error: retry, and log it
        log.warning(
            "provider %s raised on message %s",
            getattr(provider, "name", provider),
            message.message_id,
            exc_info=True,
        )
        return SendResult(Outcome.RETRY, reason=f"provider raised {type(error).__name__}")


class OneByOne:
    """The default `send_many`: one `send` per message."""

    def send_many(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return [_guarded(self, message) for message in messages]


def send_many(provider: object, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
    """Send a chunk through `provider` (its own `send_many`, else one `send` each). Never
    raises: a provider raising makes every message it was given a RETRY."""
    if not messages:
        return []
    native = getattr(provider, "send_many", None)
    if native is None:
        return [_guarded(provider, message) for message in messages]
    try:
        results = list(native(messages))
    except Exception as error:
        log.warning("provider %s raised on a chunk", getattr(provider, "name", provider),
                    exc_info=True)  # fmt: skip
        return [SendResult(Outcome.RETRY, reason=f"provider raised {type(error).__name__}")] * len(
            messages
        )
    if len(results) != len(messages):
        raise RuntimeError(f"{provider!r}.send_many answered {len(results)} of {len(messages)}")
    return results
