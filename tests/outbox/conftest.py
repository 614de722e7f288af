"""Outbox test helpers: consumers registered for one test, and the relay at a given time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
import sqlalchemy as sa

from loyalty import outbox
from loyalty.db import db
from loyalty.outbox import OutboxDelivery, OutboxEvent
from loyalty.outbox.relay import RelayResult, relay_batch

MAX_ATTEMPTS = 3


@pytest.fixture
def register() -> Iterator[Callable[..., str]]:
    """register(name, handler, *topics): a consumer for this test only."""
    names: list[str] = []

    def add(name: str, handler: outbox.Handler, *topics: str) -> str:
        outbox.consumer(*topics, name=name)(handler)
        names.append(name)
        return name

    yield add
    for name in names:
        outbox.unregister(name)


def relay(now: datetime, **kwargs: object) -> RelayResult:
    kwargs.setdefault("max_attempts", MAX_ATTEMPTS)
    return relay_batch(now, **kwargs)  # type: ignore[arg-type]


def emit(topic: str, member_id: int | None, now: datetime, **payload: object) -> int:
    """Emit and commit one event (as a business transaction would); returns its id."""
    outbox.emit(topic, member_id=member_id, payload=dict(payload), now=now)
    db.session.commit()
    return db.session.scalar(sa.select(sa.func.max(OutboxEvent.id)))


def delivery(consumer: str, event_id: int) -> OutboxDelivery:
    """The consumer's delivery of that event, as committed."""
    db.session.expire_all()
    found = db.session.scalar(
        sa.select(OutboxDelivery).where(
            OutboxDelivery.consumer == consumer, OutboxDelivery.event_id == event_id
        )
    )
    assert found is not None, (consumer, event_id)
    return found
