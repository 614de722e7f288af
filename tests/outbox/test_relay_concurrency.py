"""Several workers relay at once on PostgreSQL: each delivery exactly once (no crash), each
member's events in order, the work shared (claims skip each other's locked rows)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from loyalty import outbox
from loyalty.db import db
from loyalty.outbox import DeliveryStatus, OutboxDelivery
from tests.concurrency import in_threads
from tests.outbox.conftest import relay

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MEMBERS, PER_MEMBER, WORKERS = 20, 8, 4


@pytest.mark.postgres
def test_concurrent_relays_deliver_once_each_in_member_order(app, register):
    lock = threading.Lock()
    delivered: list[tuple[int, int, str]] = []

    def handler(event: outbox.Event) -> None:
        time.sleep(0.002)  # long enough for the workers to overlap
        with lock:
            delivered.append((event.member_id, event.id, threading.current_thread().name))

    register("test.parallel", handler, "t.x")
    for n in range(MEMBERS * PER_MEMBER):
        outbox.emit("t.x", member_id=n % MEMBERS, payload={"n": n}, now=T0)
    db.session.commit()

    def work(_: int) -> None:
        for _ in range(50):  # a worker whose claims find nothing stops; the others go on
            relay(T0, limit=5)
            left = db.session.scalar(
                sa.select(sa.func.count()).where(OutboxDelivery.status != DeliveryStatus.DONE)
            )
            db.session.commit()
            dispatched_all = db.session.scalar(
                sa.text("SELECT count(*) FROM outbox_events WHERE dispatched_at IS NULL")
            )
            db.session.commit()
            if not left and not dispatched_all:
                return

    in_threads(app, WORKERS, work)

    event_ids = [event_id for _, event_id, _ in delivered]
    assert len(event_ids) == MEMBERS * PER_MEMBER == len(set(event_ids))  # each exactly once
    for member in range(MEMBERS):
        ids = [event_id for who, event_id, _ in delivered if who == member]
        assert ids == sorted(ids), f"member {member} out of order: {ids}"
    assert len({thread for _, _, thread in delivered}) > 1  # the work was shared
