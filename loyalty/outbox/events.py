"""Writing events: `emit()` inside the business transaction, and what a consumer receives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loyalty.db import db, plain_insert
from loyalty.outbox.models import OutboxEvent


@dataclass(frozen=True)
class Event:
    """What a consumer receives: a copy of the outbox row, detached from any session."""

    id: int
    topic: str
    member_id: int | None
    payload: dict[str, Any]
    occurred_at: datetime


def emit(topic: str, *, member_id: int | None, payload: dict[str, Any], now: datetime) -> None:
    """Insert the event now, in the caller's transaction (one Core INSERT: every write
    emits, so it skips the ORM unit of work).

    The payload carries ids and amounts, never personal data (names, phones, emails,
    free-text reasons): events outlive erasure requests in consumers' logs and queues, so a
    consumer reads contact details from the member when it acts.
    """
    db.session.execute(
        plain_insert(OutboxEvent.__table__),
        {
            "topic": topic,
            "member_id": member_id,
            "payload": payload,
            "occurred_at": now,
            "dispatched_at": None,
        },
    )
