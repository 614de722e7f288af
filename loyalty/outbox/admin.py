"""Operations on deliveries: dead letters (list, retry), the backlog, purging old events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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


@dataclass(frozen=True)
class Backlog:
    undispatched: int
    oldest_undispatched_at: datetime | None
    pending: int  # deliveries not done yet (due, backing off, in flight or held back)
    oldest_pending_since: datetime | None  # when the oldest of them was created
    dead_letters: int


def backlog() -> Backlog:
    """What /readyz reports: events not yet fanned out, the pending deliveries and how long
    the oldest has waited, and how many dead letters wait for an operator.

    Each count reads a partial index, so it costs the size of the backlog, not of history.
    """
    events = OutboxEvent.__table__
    d = OutboxDelivery.__table__
    undispatched = db.session.execute(
        sa.select(sa.func.count(), sa.func.min(events.c.occurred_at)).where(
            events.c.dispatched_at.is_(None)
        )
    ).one()
    pending = db.session.execute(
        sa.select(sa.func.count(), sa.func.min(d.c.created_at)).where(
            status_is(d.c.status, DeliveryStatus.PENDING)
        )
    ).one()
    dead = db.session.scalar(
        sa.select(sa.func.count()).where(status_is(d.c.status, DeliveryStatus.DEAD))
    )
    return Backlog(undispatched[0], undispatched[1], pending[0], pending[1], dead or 0)


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
