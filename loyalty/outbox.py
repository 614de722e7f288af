"""Transactional outbox: domain events written in the same transaction as the change.

`emit()` adds a row inside the caller's transaction, so an event exists if and only if
the change committed. The `relay_outbox` job hands unpublished events to their consumers
(registered with `consumer(topic)`) and marks them published; a consumer that fails leaves
its event unpublished, and the next run retries it. Consumers must be idempotent (they
receive the event id).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, JSONType, UTCDateTime, db


class OutboxEvent(db.Model):
    __tablename__ = "outbox_events"
    __table_args__ = (
        sa.Index(
            "ix_outbox_events_unpublished",
            "id",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    topic: Mapped[str] = mapped_column(sa.String(64), index=True)
    member_id: Mapped[int | None] = mapped_column(BigInt, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)


Consumer = Callable[[OutboxEvent], None]
_consumers: dict[str, list[Consumer]] = defaultdict(list)


def emit(topic: str, *, member_id: int | None, payload: dict[str, Any], now: datetime) -> None:
    """Insert the event now, in the caller's transaction (one Core INSERT: every write
    emits, so it skips the ORM unit of work)."""
    db.session.execute(
        sa.insert(OutboxEvent.__table__),
        {
            "topic": topic,
            "member_id": member_id,
            "payload": payload,
            "occurred_at": now,
            "published_at": None,
            "attempts": 0,
        },
    )


def consumer(topic: str) -> Callable[[Consumer], Consumer]:
    def register(func: Consumer) -> Consumer:
        _consumers[topic].append(func)
        return func

    return register


def relay_batch(now: datetime, limit: int = 500) -> int:
    """Deliver up to `limit` unpublished events in id order; returns how many were published.

    Rows are claimed with SKIP LOCKED on PostgreSQL so several workers can relay at once.
    """
    query = (
        sa.select(OutboxEvent)
        .where(OutboxEvent.published_at.is_(None))
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    published = 0
    for event in db.session.scalars(query):
        event.attempts += 1
        try:
            with db.session.begin_nested():
                for handler in _consumers.get(event.topic, []):
                    handler(event)
        except Exception:
            # Left unpublished: retried on the next relay; the job log has the traceback.
            import logging

            logging.getLogger(__name__).exception("outbox consumer failed for %s", event.id)
            continue
        event.published_at = now
        published += 1
    return published
