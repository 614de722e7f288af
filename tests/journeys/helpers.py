"""Helpers of the journey tests: a controllable clock, running the scheduler's job body at
a given time, consent, and reading what a member got."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns import journeys
from campaigns.journey_models import Journey, JourneyEntry, JourneyStepRun
from loyalty.batches import run_chunks
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.outbox.relay import relay_batch
from notifications.consent import Purpose, record_consent
from notifications.models import Message
from notifications.providers.base import Channel


class Clock:
    """The time the scheduler sees; moved by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utcnow()

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def advance(now: datetime) -> int:
    """What the `advance-journeys` job does at `now`: every due step, chunk by chunk."""
    return run_chunks(lambda cursor: journeys.advance_due_chunk(cursor, now), what="test").total


def relay() -> None:
    relay_batch(utcnow(), max_attempts=3)


def consent(member_id: int, *channels: str) -> None:
    for channel in channels:
        record_consent(
            member_id,
            Channel(channel),
            Purpose.MARKETING,
            True,
            source="app",
            now=utcnow(),
            actor="test",
        )
    db.session.commit()


def journey(
    steps: list[dict[str, Any]], *, trigger: str = "manual", active: bool = True, **more: Any
) -> Journey:
    """A journey everyone goes through (no control group) unless `holdout_pct` is given:
    the tests of steps and triggers follow every member; test_holdout.py tests the group."""
    more.setdefault("holdout_pct", 0)
    created = journeys.create_journey(
        {"name": "J", "trigger": trigger, "steps": steps, **more}, now=utcnow(), actor="test"
    )
    if active:
        journeys.set_status(created.id, "active", now=utcnow())
    db.session.commit()
    return created


def messages(member_id: int) -> list[tuple[str, str]]:
    """(template, channel) of every message queued for the member, in order."""
    db.session.expire_all()
    return [
        (m.template, m.channel)
        for m in db.session.scalars(
            sa.select(Message).where(Message.member_id == member_id).order_by(Message.id)
        )
    ]


def entries(journey_id: int) -> list[JourneyEntry]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            sa.select(JourneyEntry)
            .where(JourneyEntry.journey_id == journey_id)
            .order_by(JourneyEntry.id)
        )
    )


def runs(entry_id: int) -> list[tuple[int, str]]:
    return [
        (run.step_index, run.outcome)
        for run in db.session.scalars(
            sa.select(JourneyStepRun)
            .where(JourneyStepRun.entry_id == entry_id)
            .order_by(JourneyStepRun.step_index)
        )
    ]
