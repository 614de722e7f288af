"""The relay: fan events out into per-consumer deliveries, then claim, act and record.

Each step is its own short transaction, and this module's `relay_batch` is an edge (like a
job or a request) that commits them:

1. dispatch: undispatched events, in id order, get one `pending` delivery per subscribed
   consumer (one dispatcher at a time: a PostgreSQL advisory lock), then `dispatched_at`.
2. claim (commit): a consumer's due deliveries, at most one per member (the member's oldest
   pending one), `FOR UPDATE SKIP LOCKED` so several workers relay at once. The claim counts
   the attempt, moves `next_attempt_at` to the end of a lease and sets a claim token.
3. act: the consumer runs with no transaction of the relay open.
4. record (commit): done, or failed (exponential backoff with jitter; dead after the maximum
   attempts). Recorded only under the claim token: a worker that outlived its lease (and
   whose delivery another worker took over) records nothing.

A worker that dies between 3 and 4 leaves the delivery leased; it is claimed again when the
lease ends (at least once to the consumer, which dedupes by event id).
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from loyalty.db import db, is_postgres, upsert_insert
from loyalty.outbox import consumers
from loyalty.outbox.events import Event
from loyalty.outbox.models import DeliveryStatus, OutboxDelivery, OutboxEvent, status_is

log = logging.getLogger(__name__)

BACKOFF_BASE = timedelta(seconds=10)
BACKOFF_CAP = timedelta(hours=1)
# How long a claimed delivery is reserved for its worker. A relay run acts on claims only
# within its time budget (the rest are released), so a live worker keeps its claims unless one
# consumer call outlasts LEASE - RELAY_TIME_BUDGET: consumers bound their external calls.
LEASE = timedelta(minutes=5)
RELAY_TIME_BUDGET = 60.0  # seconds per relay job; the next scheduled run continues
DISPATCH_CHUNK = 1000
CLAIM_CHUNK = 100
MAX_ERROR_LENGTH = 1000
DEFAULT_MAX_ATTEMPTS = 12  # OMNILOYAL_OUTBOX_MAX_ATTEMPTS' default; the job passes the setting
# pg_try_advisory_xact_lock key: one dispatcher at a time keeps deliveries in event order.
DISPATCH_LOCK_KEY = 0x0B0C_0001


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    consumer: str
    token: str
    attempts: int
    event: Event


@dataclass
class RelayResult:
    dispatched: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    lost: int = 0  # claims another worker took over after our lease ended

    @property
    def worked(self) -> int:
        return self.dispatched + self.delivered + self.failed + self.dead + self.lost


def backoff_delay(attempts: int, rng: Callable[[], float] = random.random) -> timedelta:
    """How long to wait after the `attempts`-th failure: 10 s, 20 s, 40 s ... capped at 1 h,
    with "equal jitter" (half fixed, half random) so retries after an outage spread out."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(max(attempts - 1, 0), 20))
    return ceiling / 2 + ceiling / 2 * rng()


# --- 1. dispatch ---------------------------------------------------------------------------


def dispatch_events(now: datetime, *, limit: int = DISPATCH_CHUNK) -> int:
    """Create the deliveries of up to `limit` undispatched events (no commit).

    Returns 0 without waiting when another worker is dispatching: two dispatchers committing
    out of order could let a later event of a member become claimable before an earlier one.
    """
    if is_postgres() and not db.session.scalar(
        sa.select(sa.func.pg_try_advisory_xact_lock(DISPATCH_LOCK_KEY))
    ):
        return 0
    events = OutboxEvent.__table__
    rows = db.session.execute(
        sa.select(events.c.id, events.c.topic, events.c.member_id)
        .where(events.c.dispatched_at.is_(None))
        .order_by(events.c.id)
        .limit(limit)
    ).all()
    if not rows:
        return 0
    deliveries = [
        {
            "event_id": row.id,
            "consumer": name,
            "member_id": row.member_id,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "claim_token": None,
            "last_error": None,
            "created_at": now,
            "updated_at": now,
            "done_at": None,
        }
        for row in rows
        for name in consumers.subscribers(row.topic)
    ]
    if deliveries:
        table = OutboxDelivery.__table__
        db.session.execute(
            upsert_insert(table).on_conflict_do_nothing(index_elements=["event_id", "consumer"]),
            deliveries,
        )
    db.session.execute(
        sa.update(events).where(events.c.id.in_([row.id for row in rows])).values(dispatched_at=now)
    )
    return len(rows)


# --- 2. claim ------------------------------------------------------------------------------


def due_deliveries(consumer: str, now: datetime, *, limit: int) -> sa.Select[tuple[int]]:
    """The ids of `consumer`'s claimable deliveries: a range of ix_outbox_deliveries_due, each
    checked against the member's queue by one probe of ix_outbox_deliveries_member_queue.

    Aliased, so it stays a subquery of its own inside the claim's UPDATE of the same table.
    """
    d = OutboxDelivery.__table__.alias("due")
    earlier = d.alias("earlier")
    held_back = (
        sa.exists()
        .where(
            earlier.c.consumer == d.c.consumer,
            earlier.c.member_id == d.c.member_id,
            status_is(earlier.c.status, DeliveryStatus.PENDING),
            earlier.c.event_id < d.c.event_id,
        )
        .correlate(d)
    )
    due = (
        sa.select(d.c.id)
        .where(
            d.c.consumer == consumer,
            status_is(d.c.status, DeliveryStatus.PENDING),
            d.c.next_attempt_at <= now,
            ~held_back,
        )
        .order_by(d.c.next_attempt_at, d.c.id)
        .limit(limit)
    )
    if is_postgres():
        due = due.with_for_update(of=d, skip_locked=True)
    return due


def claim(consumer: str, now: datetime, *, limit: int = CLAIM_CHUNK) -> list[Claim]:
    """Claim up to `limit` due deliveries of `consumer` (no commit).

    A delivery is claimable when it is pending, due, and no earlier event of the same member
    is still pending for this consumer (in flight, backing off, or waiting behind another):
    so a consumer sees each member's events in order, and a failing event holds back only
    that member's later events. Events without a member are not ordered.
    """
    d = OutboxDelivery.__table__
    due = due_deliveries(consumer, now, limit=limit)
    token = secrets.token_hex(16)
    claimed = db.session.execute(
        sa.update(d)
        .where(d.c.id.in_(due.scalar_subquery()))
        .values(
            attempts=d.c.attempts + 1,
            next_attempt_at=now + LEASE,
            claim_token=token,
            updated_at=now,
        )
        .returning(d.c.id, d.c.event_id, d.c.attempts)
    ).all()
    if not claimed:
        return []
    events = {
        row.id: Event(row.id, row.topic, row.member_id, row.payload, row.occurred_at)
        for row in db.session.execute(
            sa.select(OutboxEvent.__table__).where(
                OutboxEvent.id.in_([row.event_id for row in claimed])
            )
        )
    }
    return sorted(
        (Claim(row.id, consumer, token, row.attempts, events[row.event_id]) for row in claimed),
        key=lambda c: c.event.id,
    )


# --- 4. record -----------------------------------------------------------------------------


def _ours(claim_: Claim) -> list[sa.ColumnElement[bool]]:
    d = OutboxDelivery.__table__
    return [
        d.c.id == claim_.delivery_id,
        d.c.claim_token == claim_.token,
        status_is(d.c.status, DeliveryStatus.PENDING),
    ]


def record_done(claim_: Claim, now: datetime) -> bool:
    """Mark the delivery done; False when the claim was lost (nothing changed)."""
    d = OutboxDelivery.__table__
    result = db.session.execute(
        sa.update(d)
        .where(*_ours(claim_))
        .values(status=DeliveryStatus.DONE.value, done_at=now, updated_at=now, claim_token=None)
    )
    return result.rowcount == 1


def record_failure(
    claim_: Claim,
    error: BaseException,
    now: datetime,
    *,
    max_attempts: int,
    rng: Callable[[], float] = random.random,
) -> DeliveryStatus | None:
    """Back off (or give up: dead) after a failed attempt; None when the claim was lost."""
    dead = claim_.attempts >= max_attempts
    status = DeliveryStatus.DEAD if dead else DeliveryStatus.PENDING
    d = OutboxDelivery.__table__
    result = db.session.execute(
        sa.update(d)
        .where(*_ours(claim_))
        .values(
            status=status.value,
            next_attempt_at=now if dead else now + backoff_delay(claim_.attempts, rng),
            last_error=f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH],
            claim_token=None,
            updated_at=now,
        )
    )
    return status if result.rowcount == 1 else None


def release(claims: list[Claim], now: datetime) -> int:
    """Give back claims this worker will not act on (its time budget is spent): due again at
    once, and the attempt they were charged is refunded (no commit)."""
    d = OutboxDelivery.__table__
    released = 0
    for claim_ in claims:
        released += db.session.execute(
            sa.update(d)
            .where(*_ours(claim_))
            .values(
                attempts=d.c.attempts - 1, next_attempt_at=now, claim_token=None, updated_at=now
            )
        ).rowcount
    return released


# --- the edge ------------------------------------------------------------------------------


def deliver(claim_: Claim, now: datetime, *, max_attempts: int, result: RelayResult) -> None:
    """Act and record one claimed delivery (commits; called with no transaction open)."""
    registered = consumers.get(claim_.consumer)
    try:
        if registered is None:
            raise LookupError(f"consumer {claim_.consumer!r} is no longer registered")
        registered.handler(claim_.event)
    except Exception as error:
        db.session.rollback()  # whatever the consumer wrote goes with its failure
        log.warning(
            "outbox consumer %s failed on event %s (attempt %s)",
            claim_.consumer,
            claim_.event.id,
            claim_.attempts,
            exc_info=True,
        )
        status = record_failure(claim_, error, now, max_attempts=max_attempts)
        db.session.commit()
        if status is None:
            result.lost += 1
        elif status == DeliveryStatus.DEAD:
            result.dead += 1
        else:
            result.failed += 1
        return
    if record_done(claim_, now):
        db.session.commit()  # with the consumer's own database writes, atomically
        result.delivered += 1
    else:
        db.session.rollback()
        log.warning("outbox delivery %s was taken over by another worker", claim_.delivery_id)
        result.lost += 1


def relay_batch(
    now: datetime,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    limit: int = CLAIM_CHUNK,
    time_budget: float = RELAY_TIME_BUDGET,
) -> RelayResult:
    """Dispatch new events and deliver what is due, round after round, until nothing is left
    or the time budget is spent (commits each step; see the module docstring). Each round
    claims at most `limit` deliveries per consumer."""
    result = RelayResult()
    deadline = time.monotonic() + time_budget
    while True:
        before = result.worked
        result.dispatched += dispatch_events(now)
        db.session.commit()
        for registered in consumers.registered():
            claims = claim(registered.name, now, limit=limit)
            db.session.commit()
            for position, claim_ in enumerate(claims):
                if time.monotonic() > deadline:
                    # Never act on a claim near the end of its lease: give the rest back.
                    release(claims[position:], now)
                    db.session.commit()
                    return result
                deliver(claim_, now, max_attempts=max_attempts, result=result)
        if result.worked == before or time.monotonic() > deadline:
            return result
