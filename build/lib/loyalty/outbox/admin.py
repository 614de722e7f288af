"""Operations on deliveries: dead letters (list, retry), the backlog, purging old events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loyalty.db import db, is_postgres
from loyalty.errors import Conflict, NotFound
from loyalty.outbox.models import DeliveryStatus, OutboxDelivery, OutboxEvent, status_is


class DeliveryNotDead(Conflict):
    """Only a dead letter can be retried; a pending delivery is retried by the relay."""

    slug, title = "delivery-not-dead", "Delivery is not a dead letter"


@dataclass(frozen=True)
class DeadLetterPage:
    items: list[tuple[OutboxDelivery, OutboxEvent]]
    next_after_id: int | None


def list_dead_letters(
    *, consumer: str | None = None, after_id: int | None = None, limit: int = 50
) -> DeadLetterPage:
    """Dead letters by id (oldest first), `limit` at a time after `after_id`."""
    d = OutboxDelivery
    query = (
        sa.select(d, OutboxEvent)
        .join(OutboxEvent, OutboxEvent.id == d.event_id)
        .where(status_is(d.status, DeliveryStatus.DEAD))
        .order_by(d.id)
        .limit(limit + 1)
    )
    if consumer is not None:
        query = query.where(d.consumer == consumer)
    if after_id is not None:
        query = query.where(d.id > after_id)
    rows = [(row[0], row[1]) for row in db.session.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return DeadLetterPage(rows, rows[-1][0].id if more else None)


def _restart_values(now: datetime) -> dict[str, object]:
    # A fresh start: all attempts again, due now. last_error stays until the next outcome.
    return {
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "claim_token": None,
        "updated_at": now,
    }


def retry_dead_letter(delivery_id: int, *, now: datetime) -> tuple[OutboxDelivery, OutboxEvent]:
    """Put one dead letter back in its member's queue (delivered late, after the member's
    events that went on while it was dead)."""
    d = OutboxDelivery.__table__
    restarted = db.session.execute(
        sa.update(d)
        .where(d.c.id == delivery_id, status_is(d.c.status, DeliveryStatus.DEAD))
        .values(**_restart_values(now))
        .returning(d.c.id)
    ).scalar()
    delivery = db.session.get(OutboxDelivery, delivery_id, populate_existing=True)
    if delivery is None:
        raise NotFound(f"no outbox delivery {delivery_id}")
    if restarted is None:
        raise DeliveryNotDead(f"delivery {delivery_id} is {delivery.status}, not dead")
    event = db.session.get(OutboxEvent, delivery.event_id)
    assert event is not None  # the foreign key
    return delivery, event


def retry_dead_letters(*, now: datetime, consumer: str | None = None) -> int:
    """Put every dead letter (of one consumer, or all) back in its queue; returns how many.

    One UPDATE: it locks only dead rows, which the relay never touches.
    """
    d = OutboxDelivery.__table__
    statement = (
        sa.update(d)
        .where(status_is(d.c.status, DeliveryStatus.DEAD))
        .values(**_restart_values(now))
    )
    if consumer is not None:
        statement = statement.where(d.c.consumer == consumer)
    return db.session.execute(statement).rowcount or 0


BOUNDED_COUNT = 1000  # backlog counts stop here ("1000+"): a probe never counts a big table


def _bounded_count(where: list[Any]) -> int | str:
    d = OutboxDelivery.__table__
    inner = sa.select(sa.literal(1)).select_from(d).where(*where).limit(BOUNDED_COUNT + 1)
    count = db.session.scalar(sa.select(sa.func.count()).select_from(inner.subquery()))
    return count if count <= BOUNDED_COUNT else f"{BOUNDED_COUNT}+"


def _age(oldest: datetime | None, now: datetime) -> dict[str, Any]:
    return {
        "oldest": oldest.isoformat() if oldest else None,
        "age_seconds": max(0, int((now - oldest).total_seconds())) if oldest else 0,
    }


def _consumers_with_pending() -> list[str]:
    """Distinct consumers of pending deliveries: a loose index scan of ix_outbox_deliveries_due
    (one index probe per consumer, however many deliveries are pending)."""
    found: list[str] = []
    d = OutboxDelivery.__table__
    pending = status_is(d.c.status, DeliveryStatus.PENDING)
    while True:
        query = sa.select(sa.func.min(d.c.consumer)).where(pending)
        if found:
            query = query.where(d.c.consumer > found[-1])
        name = db.session.scalar(query)
        if name is None:
            return found
        found.append(name)


def backlog(now: datetime) -> dict[str, Any]:
    """What /readyz reports about the outbox, each figure from an index (bounded counts):

    - `undispatched_events`: events the relay has not fanned out yet, and the oldest's age;
    - `due_deliveries`: per consumer, deliveries due (or held back behind a member's failing
      event) and how long the longest-due one has waited;
    - `dead_letters`: deliveries waiting for an operator's retry.
    """
    events = OutboxEvent.__table__
    d = OutboxDelivery.__table__
    oldest_event = db.session.scalar(
        sa.select(events.c.occurred_at)
        .where(events.c.dispatched_at.is_(None))
        .order_by(events.c.id)
        .limit(1)
    )
    undispatched = db.session.scalar(
        sa.select(sa.func.count()).select_from(
            sa.select(sa.literal(1))
            .select_from(events)
            .where(events.c.dispatched_at.is_(None))
            .limit(BOUNDED_COUNT + 1)
            .subquery()
        )
    )
    due: dict[str, Any] = {}
    for name in _consumers_with_pending():
        where = [
            d.c.consumer == name,
            status_is(d.c.status, DeliveryStatus.PENDING),
            d.c.next_attempt_at <= now,
        ]
        oldest = db.session.scalar(sa.select(sa.func.min(d.c.next_attempt_at)).where(*where))
        due[name] = {"count": _bounded_count(where), **_age(oldest, now)}
    dead = [status_is(d.c.status, DeliveryStatus.DEAD)]
    oldest_dead = db.session.scalar(
        sa.select(d.c.updated_at).where(*dead).order_by(d.c.id).limit(1)
    )
    return {
        "undispatched_events": {
            "count": undispatched if undispatched <= BOUNDED_COUNT else f"{BOUNDED_COUNT}+",
            **_age(oldest_event, now),
        },
        "due_deliveries": due,
        "dead_letters": {"count": _bounded_count(dead), **_age(oldest_dead, now)},
    }


# --- retention -----------------------------------------------------------------------------


def purgeable_events(now: datetime, *, retention: timedelta, limit: int) -> sa.Select[tuple[int]]:
    """The oldest dispatched events (a range of ix_outbox_events_dispatched_at) with no
    unfinished delivery (a probe of the (event_id, consumer) unique index each)."""
    events = OutboxEvent.__table__
    d = OutboxDelivery.__table__
    unfinished = sa.exists().where(
        d.c.event_id == events.c.id, ~status_is(d.c.status, DeliveryStatus.DONE)
    )
    chosen = (
        sa.select(events.c.id)
        .where(events.c.dispatched_at < now - retention, ~unfinished)
        .order_by(events.c.dispatched_at)
        .limit(limit)
    )
    if is_postgres():
        chosen = chosen.with_for_update(of=events, skip_locked=True)
    return chosen


def purge_published_chunk(now: datetime, *, retention: timedelta, limit: int = 1000) -> int:
    """Delete up to `limit` events dispatched before `now - retention` whose deliveries are
    all done, with their deliveries (no commit: the job commits each chunk).

    Events with a pending or dead delivery are kept until it is done: a dead letter is never
    purged unseen.
    """
    events = OutboxEvent.__table__
    d = OutboxDelivery.__table__
    ids = list(db.session.scalars(purgeable_events(now, retention=retention, limit=limit)))
    if not ids:
        return 0
    db.session.execute(sa.delete(d).where(d.c.event_id.in_(ids)))
    db.session.execute(sa.delete(events).where(events.c.id.in_(ids)))
    return len(ids)
