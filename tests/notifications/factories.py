"""Notification helpers for tests: queue a message, run the send job's rounds, read back."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app

from loyalty.clock import utcnow
from loyalty.db import db
from notifications import pipeline
from notifications.consent import Purpose
from notifications.models import Message, MessageTransition, RecordedMessage
from notifications.providers.base import Channel, Outcome, OutgoingMessage, Provider, SendResult
from notifications.providers.recording import RecordingProvider


def queue(
    member_id: int | None,
    *,
    channel: Channel = Channel.SMS,
    template: str = "points_earned",
    purpose: Purpose = Purpose.TRANSACTIONAL,
    variables: dict[str, Any] | None = None,
    now: datetime | None = None,
    destination: str | None = None,
    dedupe_key: str | None = None,
) -> Message:
    """Queue one message and commit (as its cause's transaction would)."""
    message = pipeline.queue_message(
        member_id=member_id,
        channel=channel,
        template=template,
        purpose=purpose,
        dedupe_key=dedupe_key or uuid.uuid4().hex,
        variables=variables if variables is not None else {"points": 10},
        now=now or utcnow(),
        destination=destination,
    )
    db.session.commit()
    assert message is not None
    return message


def send_round(
    *,
    now: datetime | None = None,
    providers: dict[Channel, Provider] | None = None,
    settings: Any = None,
    **overrides: Any,
) -> pipeline.SendStats:
    """Run the send job's loop once at `now` (all rounds until nothing is due)."""
    from dataclasses import replace

    from notifications.jobs import providers as app_providers

    settings = settings or current_app.extensions["omniloyal.settings"]
    if overrides:
        settings = replace(settings, **overrides)
    moment = now or utcnow()
    return pipeline.send_due(
        settings=settings,
        providers=providers or app_providers(),
        redis=current_app.extensions["omniloyal.redis"],
        clock=lambda: moment,
    )


def reload(message_id: int) -> Message:
    db.session.expire_all()
    found = db.session.get(Message, message_id)
    assert found is not None
    db.session.rollback()
    return found


def transitions(message_id: int) -> list[tuple[str, str | None]]:
    rows = db.session.execute(
        sa.select(MessageTransition.to_state, MessageTransition.reason)
        .where(MessageTransition.message_id == message_id)
        .order_by(MessageTransition.id)
    ).all()
    db.session.rollback()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def recorded() -> list[RecordedMessage]:
    db.session.expire_all()
    rows = list(db.session.scalars(sa.select(RecordedMessage).order_by(RecordedMessage.message_id)))
    db.session.rollback()
    return rows


class ScriptedProvider:
    """A real provider object answering from a script, counting calls (no network)."""

    idempotent = False

    def __init__(self, channel: Channel, *outcomes: SendResult) -> None:
        self.channel, self.name = channel, f"scripted-{channel.value}"
        self.outcomes = list(outcomes)
        self.calls: list[OutgoingMessage] = []

    def send(self, message: OutgoingMessage) -> SendResult:
        self.calls.append(message)
        return self.outcomes.pop(0) if self.outcomes else SendResult(Outcome.ACCEPTED, "x")


def providers_with(provider) -> dict:
    found = {c: RecordingProvider(c) for c in Channel}
    found[provider.channel] = provider
    return found
