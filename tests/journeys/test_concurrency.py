"""Under real concurrency on PostgreSQL: an event's places are never oversold, the due
journey steps run once however many workers advance them, a trigger enters once."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaigns import journeys, o2o
from campaigns.journey_models import EventReservation, JourneyStepRun, StoreEvent
from loyalty.batches import BatchCursor
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import Conflict
from loyalty.ledger.operations import member_balance
from loyalty.transactions import commit_retrying
from tests.concurrency import in_threads
from tests.factories import idem
from tests.journeys.helpers import journey

pytestmark = pytest.mark.postgres


def test_twenty_members_race_for_five_places_and_five_get_one(app, client, make):
    store = make.store("S1")
    event = o2o.create_event(
        {
            "name": "Launch",
            "store_id": store.id,
            "starts_at": utcnow() + timedelta(days=1),
            "ends_at": utcnow() + timedelta(days=1, hours=2),
            "capacity": 5,
        },
        now=utcnow(),
    )
    db.session.commit()
    event_id = event.id
    tokens = [make.member_token(make.member().id) for _ in range(20)]

    def reserve(i: int) -> int:
        with app.test_client() as own:
            return own.post(
                f"/v1/me/events/{event_id}/reservation", headers=idem(tokens[i])
            ).status_code

    statuses = in_threads(app, 20, reserve)
    assert sorted(statuses) == [201] * 5 + [409] * 15
    db.session.expire_all()
    assert db.session.get(StoreEvent, event_id).reserved == 5
    assert db.session.scalar(sa.select(sa.func.count()).select_from(EventReservation)) == 5
    del client


def test_the_same_member_reserving_from_two_devices_takes_one_place(app, make):
    store = make.store("S1")
    event = o2o.create_event(
        {
            "name": "Launch",
            "store_id": store.id,
            "starts_at": utcnow() + timedelta(days=1),
            "ends_at": utcnow() + timedelta(days=1, hours=2),
            "capacity": 5,
        },
        now=utcnow(),
    )
    db.session.commit()
    event_id, member_id = event.id, make.member().id

    def reserve(_: int) -> bool:
        def once() -> bool:
            try:
                return o2o.reserve(event_id, member_id, now=utcnow())[1]
            except Conflict:
                return False

        return commit_retrying(once, what="reserve")

    assert sorted(in_threads(app, 6, reserve)) == [False] * 5 + [True]
    db.session.expire_all()
    assert db.session.get(StoreEvent, event_id).reserved == 1


def test_four_workers_advancing_at_once_run_each_step_once(app, make):
    flow = journey([{"type": "points", "points": 10}, {"type": "points", "points": 5}])
    members = [make.member().id for _ in range(40)]
    journeys.enter_manually(flow.id, members, cause="t", now=utcnow())
    db.session.commit()
    now = utcnow() + timedelta(seconds=1)

    def work(_: int) -> int:
        cursor, total = BatchCursor(), 0
        while True:
            before = cursor.handled
            total += commit_retrying(
                lambda: journeys.advance_due_chunk(cursor, now, limit=7), what="advance"
            )
            if cursor.handled == before:
                return total

    ran = in_threads(app, 4, work)
    assert sum(ran) == 80
    assert db.session.scalar(sa.select(sa.func.count()).select_from(JourneyStepRun)) == 80
    assert {member_balance(m).available for m in members} == {15}
