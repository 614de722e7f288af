"""The relay: each consumer's own delivery state, backoff, dead letters, per-member order,
consumer work outside the claiming transaction, at least once after a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from loyalty import outbox
from loyalty.db import db, start_reading, stop_reading
from loyalty.outbox import DeliveryStatus, OutboxDelivery, OutboxEvent
from loyalty.outbox.relay import BACKOFF_CAP, LEASE, backoff_delay, claim, record_done
from tests.outbox.conftest import MAX_ATTEMPTS, delivery, emit, relay

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = BACKOFF_CAP + timedelta(seconds=1)  # past any backoff


class Boom(RuntimeError):
    pass


def test_each_consumer_has_its_own_state_so_a_failing_one_never_redelivers_to_the_others(
    app, register
):
    seen: list[int] = []

    def failing(event: outbox.Event) -> None:
        raise Boom("provider down")

    register("test.good", lambda event: seen.append(event.id), "t.x")
    register("test.failing", failing, "t.x")
    event_id = emit("t.x", 1, T0)

    relay(T0)
    relay(T0 + LATER)

    assert seen == [event_id]  # the old relay redelivered to every consumer on each retry
    assert delivery("test.good", event_id).status == DeliveryStatus.DONE
    failed = delivery("test.failing", event_id)
    assert (failed.status, failed.attempts) == (DeliveryStatus.PENDING, 2)
    assert failed.last_error == "Boom: provider down"


def test_a_poison_event_becomes_a_dead_letter_and_never_blocks_other_members(app, register):
    seen: list[int] = []

    def handler(event: outbox.Event) -> None:
        if event.payload.get("poison"):
            raise Boom("cannot handle this event")
        seen.append(event.id)

    register("test.picky", handler, "t.x")
    poison = [emit("t.x", member, T0, poison=True) for member in range(1, 6)]
    good = [emit("t.x", member, T0) for member in range(6, 16)]

    # Claims of 3 at a time: the old relay re-read the oldest poison rows on every run.
    relay(T0, limit=3)
    assert seen == good

    now = T0
    for _ in range(MAX_ATTEMPTS - 1):
        now += LATER
        relay(now, limit=3)
    for event_id in poison:
        dead = delivery("test.picky", event_id)
        assert (dead.status, dead.attempts) == (DeliveryStatus.DEAD, MAX_ATTEMPTS)
        assert dead.last_error == "Boom: cannot handle this event"
    relay(now + LATER * 10)  # dead letters are not retried by the relay
    assert delivery("test.picky", poison[0]).attempts == MAX_ATTEMPTS


def test_backoff_doubles_from_10_seconds_to_an_hour_with_equal_jitter():
    assert backoff_delay(1, rng=lambda: 0.0) == timedelta(seconds=5)
    assert backoff_delay(1, rng=lambda: 1.0) == timedelta(seconds=10)
    assert backoff_delay(4, rng=lambda: 1.0) == timedelta(seconds=80)
    assert backoff_delay(4, rng=lambda: 0.5) == timedelta(seconds=60)
    assert backoff_delay(50, rng=lambda: 0.0) == timedelta(minutes=30)
    assert backoff_delay(10_000, rng=lambda: 1.0) == timedelta(hours=1)


def test_a_failed_delivery_waits_for_its_backoff(app, register):
    calls: list[int] = []

    def failing(event: outbox.Event) -> None:
        calls.append(event.id)
        raise Boom("down")

    register("test.failing", failing, "t.x")
    event_id = emit("t.x", 1, T0)
    relay(T0)
    due = delivery("test.failing", event_id).next_attempt_at
    assert T0 + timedelta(seconds=5) <= due <= T0 + timedelta(seconds=10)

    relay(due - timedelta(seconds=1))
    assert len(calls) == 1
    relay(due)
    assert len(calls) == 2
    second = delivery("test.failing", event_id).next_attempt_at
    assert due + timedelta(seconds=10) <= second <= due + timedelta(seconds=20)


def test_a_failing_event_holds_back_only_its_members_later_events(app, register):
    seen: list[tuple[int, int]] = []
    broken = {"member": 1}

    def handler(event: outbox.Event) -> None:
        if event.member_id == broken["member"]:
            raise Boom("member 1's first event fails")
        seen.append((event.member_id, event.id))

    register("test.ordered", handler, "t.x")
    x1, y1, x2, y2 = (emit("t.x", member, T0) for member in (1, 2, 1, 2))

    relay(T0)
    assert seen == [(2, y1), (2, y2)]  # the old relay delivered x2 while x1 was failing
    assert delivery("test.ordered", x2).attempts == 0

    broken["member"] = None
    relay(T0 + LATER)
    assert seen == [(2, y1), (2, y2), (1, x1), (1, x2)]


def test_one_run_delivers_each_members_events_in_order(app, register):
    seen: list[tuple[int, int]] = []
    register("test.ordered", lambda event: seen.append((event.member_id, event.id)), "t.x")
    for n in range(12):
        emit("t.x", n % 3, T0, n=n)

    result = relay(T0, limit=2)

    assert result.delivered == 12
    for member in range(3):
        ids = [event_id for who, event_id in seen if who == member]
        assert len(ids) == 4 and ids == sorted(ids)


def test_events_without_a_member_are_not_held_back_by_each_other(app, register):
    seen: list[int] = []

    def handler(event: outbox.Event) -> None:
        if event.payload.get("poison"):
            raise Boom("no")
        seen.append(event.id)

    register("test.batch", handler, "t.x")
    emit("t.x", None, T0, poison=True)
    second = emit("t.x", None, T0)
    relay(T0)
    assert seen == [second]


def test_the_consumer_runs_after_its_claim_committed_in_a_savepoint_of_its_own(app, register):
    observed: dict[str, object] = {}

    def handler(event: outbox.Event) -> None:
        observed["in_savepoint"] = db.session().in_nested_transaction()
        reading = start_reading()  # SQLite: a reader's BEGIN, beside the relay's writer
        with db.engine.connect() as other:  # what any other connection sees right now
            row = other.execute(
                sa.select(OutboxDelivery.__table__).where(OutboxDelivery.event_id == event.id)
            ).one()
        stop_reading(reading)
        observed["committed"] = (row.status, row.attempts, row.claim_token is not None)

    register("test.observer", handler, "t.x")
    event_id = emit("t.x", 1, T0)
    relay(T0)

    assert observed == {"in_savepoint": True, "committed": ("pending", 1, True)}
    assert delivery("test.observer", event_id).status == DeliveryStatus.DONE


def test_a_consumers_database_writes_commit_with_its_success_and_roll_back_with_its_failure(
    app, register
):
    attempts = {"n": 0}

    def handler(event: outbox.Event) -> None:
        attempts["n"] += 1
        outbox.emit("t.followup", member_id=event.member_id, payload={}, now=T0)
        if attempts["n"] == 1:
            raise Boom("after writing")

    register("test.writer", handler, "t.x")
    emit("t.x", 1, T0)

    def followups() -> int:
        db.session.rollback()
        return db.session.scalar(
            sa.select(sa.func.count()).where(OutboxEvent.topic == "t.followup")
        )

    relay(T0)
    assert followups() == 0
    relay(T0 + LATER)
    assert followups() == 1


def test_a_worker_dying_before_it_records_means_one_more_delivery_after_the_lease(app, register):
    seen: list[int] = []
    register("test.once", lambda event: seen.append(event.id), "t.x")
    event_id = emit("t.x", 1, T0)
    relay(T0 + timedelta(days=-1), limit=0)  # dispatch only: nothing due yet
    db.session.commit()

    claims = claim("test.once", T0, limit=10)
    db.session.commit()
    assert [c.event.id for c in claims] == [event_id]
    # ... the worker dies here: no result is recorded.

    relay(T0 + LEASE - timedelta(seconds=1))
    assert seen == []  # still leased to the dead worker
    relay(T0 + LEASE)
    assert seen == [event_id]
    done = delivery("test.once", event_id)
    assert (done.status, done.attempts) == (DeliveryStatus.DONE, 2)

    # The first worker, had it only been slow, can no longer record: the claim moved on.
    assert record_done(claims[0], T0 + LEASE) is False
    db.session.rollback()


def test_a_succeeded_delivery_is_never_run_again(app, register):
    seen: list[int] = []
    register("test.once", lambda event: seen.append(event.id), "t.x")
    emit("t.x", 1, T0)
    for hours in range(5):
        relay(T0 + timedelta(hours=hours))
    assert len(seen) == 1


def test_events_no_consumer_subscribes_to_are_dispatched_without_deliveries(app, register):
    register("test.other", lambda event: None, "t.other")
    event_id = emit("t.nobody", 1, T0)
    assert relay(T0).dispatched == 1
    db.session.expire_all()
    assert db.session.get(OutboxEvent, event_id).dispatched_at == T0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxDelivery)) == 0


def test_consumers_are_registered_by_a_stable_unique_name(app, register):
    def first(event: outbox.Event) -> None: ...

    def second(event: outbox.Event) -> None: ...

    register("test.named", first, "t.a")
    outbox.consumer("t.b", name="test.named")(first)  # the same function: one more topic
    (registered,) = [c for c in outbox.registered() if c.name == "test.named"]
    assert registered.topics == {"t.a", "t.b"}
    with pytest.raises(ValueError, match="already registered"):
        outbox.consumer("t.c", name="test.named")(second)
    with pytest.raises(ValueError, match="at least one topic"):
        outbox.consumer(name="test.none")


LEGACY_SEEN: list[int] = []


def legacy_consumer(event: outbox.Event) -> None:
    LEGACY_SEEN.append(event.id)


def test_the_plain_topic_decorator_still_registers_under_the_functions_path(app):
    LEGACY_SEEN.clear()
    outbox.consumer("t.legacy")(legacy_consumer)
    name = f"{__name__}.legacy_consumer"
    try:
        event_id = emit("t.legacy", 1, T0)
        relay(T0)
        assert [event_id] == LEGACY_SEEN
        assert delivery(name, event_id).status == DeliveryStatus.DONE
    finally:
        outbox.unregister(name)


def test_a_relay_out_of_time_gives_back_the_claims_it_has_not_acted_on(app, register):
    seen: list[int] = []
    register("test.slow", lambda event: seen.append(event.id), "t.x")
    events = [emit("t.x", member, T0) for member in range(1, 4)]

    result = relay(T0, time_budget=-1.0)  # the budget is spent before the first call

    assert seen == [] and result.delivered == 0
    for event_id in events:
        released = delivery("test.slow", event_id)
        assert (released.attempts, released.claim_token, released.next_attempt_at) == (0, None, T0)
    relay(T0)
    assert seen == events


def test_a_batch_consumer_gets_the_chunk_and_one_poison_event_fails_alone(app, register):
    calls: list[list[int]] = []

    def batch(events: list[outbox.Event]) -> None:
        calls.append([e.id for e in events])
        for event in events:
            outbox.emit("t.followup", member_id=event.member_id, payload={}, now=T0)
            if event.payload.get("poison"):
                raise Boom("bad event")

    outbox.consumer("t.x", name="test.batch", batch=True)(batch)
    try:
        good = [emit("t.x", member, T0) for member in (1, 2)]
        bad = emit("t.x", 3, T0, poison=True)
        relay(T0)
    finally:
        outbox.unregister("test.batch")

    assert calls[0] == [*good, bad]  # the chunk at once, then each event alone
    assert calls[1:] == [[good[0]], [good[1]], [bad]]
    assert [delivery("test.batch", e).status for e in good] == [DeliveryStatus.DONE] * 2
    failed = delivery("test.batch", bad)
    assert (failed.status, failed.last_error) == (DeliveryStatus.PENDING, "Boom: bad event")
    db.session.rollback()
    followups = db.session.scalar(
        sa.select(sa.func.count()).where(OutboxEvent.topic == "t.followup")
    )
    assert followups == 2  # the good events' writes committed; the poison one's rolled back
