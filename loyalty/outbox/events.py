"""Writing events: `emit()` inside the business transaction, and what a consumer receives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa

from loyalty.db import db
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
    db.session.execute(event_insert(), event_parameters(topic, member_id, payload, now))


@cache
def event_insert() -> sa.Insert:
    """The INSERT of one event, its values as parameters named `event_*` (built once). A
    hot path may send it with writes of its own as CTEs (`event_insert().add_cte(...)`,
    PostgreSQL), one round trip for both; the rules of `emit` apply."""
    table = OutboxEvent.__table__
    return sa.insert(table).values(
        topic=sa.bindparam("event_topic"),
        member_id=sa.bindparam("event_member_id"),
        payload=sa.bindparam("event_payload", type_=table.c.payload.type),
        occurred_at=sa.bindparam("event_occurred_at", type_=table.c.occurred_at.type),
        dispatched_at=sa.null(),
    )


def event_parameters(
    topic: str, member_id: int | None, payload: dict[str, Any], now: datetime
) -> dict[str, Any]:
    return {
        "event_topic": topic,
        "event_member_id": member_id,
        "event_payload": payload,
        "event_occurred_at": now,
    }
