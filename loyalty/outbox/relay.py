"""The relay: fan events out into per-consumer deliveries, then claim, act and record.

Each step is its own short transaction, and this module's `relay_batch` is an edge (like a
job or a request) that commits them:

1. dispatch: undispatched events, in id order, get one `pending` delivery per subscribed
   consumer (one dispatcher at a time: a PostgreSQL advisory lock), then `dispatched_at`.
2. claim (commit): a consumer's due deliveries, at most one per member (the member's oldest
   pending one), `FOR UPDATE SKIP LOCKED` so several workers relay at once. The claim counts
   the attempt, moves `next_attempt_at` to the end of a lease and sets a claim token.
3. act + record (one transaction per chunk, committed once): the chunk's deliveries that are
   still ours (claim token) are marked done in one UPDATE that also locks them; a worker
   that outlived its lease (another took the delivery over) acts on none of those. The
   consumer gets the chunk (`batch=True`) or each event, every call in a savepoint: a
   consumer that raises has its own writes rolled back and its delivery backed off
   (exponential backoff with jitter; dead after the maximum attempts), and the rest of the
   chunk commits with its consumers' writes.

Steps 2-3 are `loyalty.batches.run_claimed`. A worker that dies before the commit of 3
leaves the chunk leased; it is claimed again when the lease ends (at least once to the
consumer, which dedupes by event id).
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from loyalty.db import any_of, db, is_postgres, upsert_insert
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
ID_SLICE = 100  # ids per `IN (...)` list of dispatch_events' UPDATE
CLAIM_CHUNK = 500  # deliveries per consumer and round, handed over as one chunk
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
    # Marked in slices of ID_SLICE ids: PostgreSQL prices each id of a list as a random
    # read of the primary key, so a thousand ids against a young table (tens of thousands
    # of rows) plan as a sequential scan of it; a hundred stay index probes at any size.
    ids = [row.id for row in rows]
    for start in range(0, len(ids), ID_SLICE):
        db.session.execute(
            sa.update(events)
            .where(any_of(events.c.id, ids[start : start + ID_SLICE]))
            .values(dispatched_at=now)
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
                any_of(OutboxEvent.id, [row.event_id for row in claimed])
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


def _owned_as_done(claims: Sequence[Claim], now: datetime) -> set[int]:
    """Mark the chunk's deliveries done, where they are still ours, in one UPDATE that also
    locks them until this transaction ends (so no other worker can take one over while
    the consumer acts). Returns the delivery ids that were ours; a failure found later in
    the same transaction overwrites its `done` (`_fail_owned`)."""
    if not claims:
        return set()
    d = OutboxDelivery.__table__
    rows = db.session.execute(
        sa.update(d)
        .where(
            any_of(d.c.id, [c.delivery_id for c in claims]),
            d.c.claim_token == claims[0].token,
            status_is(d.c.status, DeliveryStatus.PENDING),
        )
        .values(status=DeliveryStatus.DONE.value, done_at=now, updated_at=now, claim_token=None)
        .returning(d.c.id)
    ).all()
    return {row.id for row in rows}


def _fail_owned(
    claim_: Claim, error: BaseException, now: datetime, *, max_attempts: int
) -> DeliveryStatus:
    """Back off (or give up: dead) a delivery this transaction already holds (marked done
    by `_owned_as_done`, so its row is locked and ours)."""
    dead = claim_.attempts >= max_attempts
    status = DeliveryStatus.DEAD if dead else DeliveryStatus.PENDING
    d = OutboxDelivery.__table__
    db.session.execute(
        sa.update(d)
        .where(d.c.id == claim_.delivery_id)
        .values(
            status=status.value,
            next_attempt_at=now if dead else now + backoff_delay(claim_.attempts),
            last_error=f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH],
            done_at=None,
            updated_at=now,
        )
    )
    return status


def _run_isolated(call: Callable[[], None]) -> BaseException | None:
    """Run a consumer call in a savepoint: what it wrote stays when it returns and is
    rolled back alone when it raises (the rest of the chunk keeps its writes)."""
    try:
        with db.session.begin_nested():
            call()
    except Exception as error:
        return error
    return None


def act_on_chunk(
    claims: Sequence[Claim], now: datetime, *, max_attempts: int, result: RelayResult
) -> None:
    """Hand a claimed chunk of one consumer to it and record the outcomes, all in one
    transaction (committed by the caller): the consumer's writes commit with their `done`
    records. Each event runs in a savepoint (a batch consumer: the chunk in one; if that
    raises, each event again in its own), so one failing event backs off alone."""
    if not claims:
        return
    registered = consumers.get(claims[0].consumer)
    owned_ids = _owned_as_done(claims, now)
    result.lost += len(claims) - len(owned_ids)
    if len(owned_ids) < len(claims):
        log.warning(
            "%d outbox deliveries were taken over by another worker", len(claims) - len(owned_ids)
        )
    owned = [c for c in claims if c.delivery_id in owned_ids]
    if not owned:
        return
    failures: dict[int, BaseException] = {}
    if registered is None:
        missing = LookupError(f"consumer {claims[0].consumer!r} is no longer registered")
        failures = {c.delivery_id: missing for c in owned}
    elif registered.batch and len(owned) > 1:
        if _run_isolated(lambda: registered.handle([c.event for c in owned])) is not None:
            for claim_ in owned:
                error = _run_isolated(lambda c=claim_: registered.handle([c.event]))
                if error is not None:
                    failures[claim_.delivery_id] = error
    else:
        for claim_ in owned:
            error = _run_isolated(lambda c=claim_: registered.handle([c.event]))
            if error is not None:
                failures[claim_.delivery_id] = error
    for claim_ in owned:
        error = failures.get(claim_.delivery_id)
        if error is None:
            result.delivered += 1
            continue
        log.warning(
            "outbox consumer %s failed on event %s (attempt %s)",
            claim_.consumer, claim_.event.id, claim_.attempts, exc_info=error,
        )  # fmt: skip
        status = _fail_owned(claim_, error, now, max_attempts=max_attempts)
        if status == DeliveryStatus.DEAD:
            result.dead += 1
        else:
            result.failed += 1


def deliver(claim_: Claim, now: datetime, *, max_attempts: int, result: RelayResult) -> None:
    """Act and record one claimed delivery (commits; called with no transaction open)."""
    act_on_chunk([claim_], now, max_attempts=max_attempts, result=result)
    db.session.commit()


ANALYZE_AFTER = 20_000  # rows changed in an outbox table since its last ANALYZE
ANALYZE_LOCK_KEY = 0x0B0C_0002  # one worker analyzes at a time; the others go on


def analyze_if_stale() -> list[str]:
    """ANALYZE the outbox tables that changed by ANALYZE_AFTER rows since their statistics
    were taken (PostgreSQL only; its own short transaction; one read of pg_stat per relay
    run). Returns the tables analyzed.

    Why: the claim's plan is chosen from the tables' statistics, and autovacuum analyzes
    a table only after 10 % of it changed. Statistics taken while outbox_deliveries was
    (nearly) empty say a consumer has one pending delivery: the planner then runs the
    "held back" check as a nested-loop anti join over ix_outbox_deliveries_due instead of
    one probe of ix_outbox_deliveries_member_queue per candidate, which is quadratic: a
    burst of 100,000 events held one claim for minutes (`make bench-notify`), and plans
    for long id lists turned into sequential scans of outbox_events
    (tests/performance/test_index_usage.py). Fresh statistics after every burst keep the
    index plans; ANALYZE samples a fixed number of rows, so it costs the same however
    large the tables grow."""
    if not is_postgres():
        return []
    db.session.commit()
    stale = db.session.scalars(
        sa.text(
            "SELECT relname FROM pg_stat_user_tables"
            " WHERE relname IN ('outbox_deliveries', 'outbox_events')"
            " AND n_mod_since_analyze >= :threshold"
        ),
        {"threshold": ANALYZE_AFTER},
    ).all()
    if stale and db.session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(ANALYZE_LOCK_KEY))):
        for table in sorted(stale):  # names from the catalogue query above, not input
            db.session.execute(sa.text(f"ANALYZE {table}"))
    else:
        stale = []
    db.session.commit()
    return list(stale)


def relay_batch(
    now: datetime,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    limit: int = CLAIM_CHUNK,
    time_budget: float = RELAY_TIME_BUDGET,
) -> RelayResult:
    """Dispatch new events and deliver what is due, round after round, until nothing is left
    or the time budget is spent (commits each step; see the module docstring). Each round
    claims at most `limit` deliveries per consumer and hands them over as one chunk."""
    from loyalty.batches import run_claimed

    result = RelayResult()
    deadline = time.monotonic() + time_budget
    while True:
        before = result.worked
        result.dispatched += dispatch_events(now)
        db.session.commit()
        analyze_if_stale()
        for registered in consumers.registered():
            name = registered.name
            run = run_claimed(
                lambda name=name: claim(name, now, limit=limit) or None,
                lambda claims: act_on_chunk(claims, now, max_attempts=max_attempts, result=result),
                lambda _claims, _outcome: None,  # act_on_chunk recorded under the claim
                release=lambda claims: release(list(claims), now),
                deadline=deadline,
                max_rounds=1,
            )
            if run.released:
                return result
        if result.worked == before or time.monotonic() > deadline:
            return result
