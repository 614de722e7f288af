"""Purging keeps the outbox and the idempotency keys bounded: chunk by chunk, each chunk its
own transaction, never an event whose delivery is unfinished."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from loyalty import idempotency, outbox
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.idempotency import IdempotencyRecord
from loyalty.jobs import periodic_jobs, purge_idempotency_keys, purge_outbox
from loyalty.outbox import OutboxDelivery, OutboxEvent
from loyalty.outbox.admin import purge_published_chunk
from tests.outbox.conftest import MAX_ATTEMPTS, emit, relay


class Refused(RuntimeError):
    pass


def _ids(model) -> set[int]:
    db.session.rollback()
    return set(db.session.scalars(sa.select(model.id)))


def test_events_fully_delivered_before_the_retention_period_are_purged_in_chunks(app, register):
    def handler(event: outbox.Event) -> None:
        if event.payload.get("fails"):
            raise Refused("no")

    register("test.consumer", handler, "t.x")
    now = utcnow()
    old = now - timedelta(days=8)  # the default retention is 7 days
    done_old = [emit("t.x", member, old) for member in range(1, 6)]
    no_consumer_old = emit("t.nobody", 1, old)
    failing_old = emit("t.x", 20, old, fails=True)
    relay(old)
    for hours in range(1, MAX_ATTEMPTS):  # fails=True ends dead
        relay(old + timedelta(hours=hours))
    pending_old = emit("t.x", 30, old, fails=True)
    relay(old + timedelta(hours=10))  # pending, backing off
    recent = emit("t.x", 1, now)
    relay(now)
    undispatched = emit("t.x", 2, old)

    purged = purge_outbox(chunk=2)

    assert purged == 6
    assert not _ids(OutboxEvent) & {*done_old, no_consumer_old}
    assert _ids(OutboxEvent) == {failing_old, pending_old, recent, undispatched}
    kept_deliveries = {d.event_id for d in db.session.scalars(sa.select(OutboxDelivery))}
    assert kept_deliveries == {failing_old, pending_old, recent}
    assert purge_outbox(chunk=2) == 0


def test_one_purge_chunk_deletes_at_most_its_limit(app, register):
    register("test.consumer", lambda event: None, "t.x")
    old = utcnow() - timedelta(days=30)
    for member in range(5):
        emit("t.x", member, old)
    relay(old)

    assert purge_published_chunk(utcnow(), retention=timedelta(days=7), limit=2) == 2
    db.session.commit()
    assert len(_ids(OutboxEvent)) == 3


def _claim_key(key: str, hours_ago: int) -> None:
    idempotency.claim("client:1", key, "print", utcnow() - timedelta(hours=hours_ago))
    db.session.commit()


def test_expired_idempotency_keys_are_purged_in_chunks_and_recent_ones_kept(app):
    ttl = app.extensions["omniloyal.settings"].idempotency_ttl_hours
    for n in range(5):
        _claim_key(f"old-{n}", ttl + 1 + n)
    for n in range(2):
        _claim_key(f"new-{n}", ttl - 1)

    assert idempotency.purge_expired_chunk(utcnow(), ttl, limit=2) == 2
    db.session.commit()
    assert purge_idempotency_keys(chunk=2) == 3

    db.session.rollback()
    kept = set(db.session.scalars(sa.select(IdempotencyRecord.key)))
    assert kept == {"new-0", "new-1"}


def test_both_purges_are_scheduled():
    names = {schedule.name for schedule in periodic_jobs()}
    assert {"purge-outbox", "purge-idempotency-keys", "relay-outbox"} <= names
