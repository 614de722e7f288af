"""Triggers: outbox events (enrolment, first purchase, tier change, points expiring) and the
scheduled scans (birthdays in the member's own timezone, no purchase for N days) enter
members once per cause, within the journey's re-entry rule."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from campaigns import profiles, triggers
from campaigns.journey_models import JourneyEntry
from loyalty.auth import scopes
from loyalty.batches import BatchCursor, run_chunks
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.ledger.operations import announce_expiring_points
from loyalty.outbox.relay import relay_batch
from loyalty.tiers.operations import create_tier
from tests.earning.factories import base_rate, order_body
from tests.factories import idem
from tests.journeys.helpers import journey, relay

ONE_POINT = [{"type": "points", "points": 1}]


def entered(journey_id: int) -> list[tuple[int, str]]:
    db.session.expire_all()
    return [
        (row.member_id, row.cause_key.split(":")[0])
        for row in db.session.scalars(
            sa.select(JourneyEntry)
            .where(JourneyEntry.journey_id == journey_id)
            .order_by(JourneyEntry.id)
        )
    ]


def test_enrolment_first_purchase_tier_change_and_expiring_points_start_their_journeys(
    app, client, make
):
    create_tier({"code": "gold", "name": "Gold", "rank": 1, "threshold": 50}, now=utcnow())
    db.session.commit()
    welcome = journey(ONE_POINT, trigger="member.enrolled")
    first = journey(ONE_POINT, trigger="first_purchase")
    upgraded = journey(ONE_POINT, trigger="tier.changed")
    expiring = journey(ONE_POINT, trigger="points.expiring", reentry="always")
    draft = journey(ONE_POINT, trigger="member.enrolled", active=False)

    member = make.member()
    base_rate(points=1, per_minor=100)
    pos = make.api_key(scopes.ORDERS_WRITE)
    for _ in range(2):
        body = order_body({"member_id": member.id})  # 100 points each: gold after the first
        assert client.post("/v1/orders", json=body, headers=idem(pos)).status_code == 201
    make.earn(member.id, 30, expires_at=utcnow() + timedelta(days=10))
    announce_expiring_points(utcnow())
    db.session.commit()
    relay()
    relay_batch(utcnow(), max_attempts=3)  # a second relay run: nothing more

    assert entered(welcome.id) == [(member.id, "event")]
    assert entered(first.id) == [(member.id, "event")]  # the second order is no first purchase
    assert entered(upgraded.id) == [(member.id, "event")]
    assert entered(expiring.id) == [(member.id, "event")]
    assert entered(draft.id) == []


def test_birthdays_are_read_in_the_members_timezone_once_a_year(app, make):
    party = journey(ONE_POINT, trigger="birthday", reentry="always")
    # 23:30 UTC on 14 March: already the 15th in Tokyo, still the 14th in London.
    now = datetime(2030, 3, 14, 23, 30, tzinfo=UTC)
    tokyo = make.member(birthday=date(1990, 3, 15), timezone="Asia/Tokyo")
    london = make.member(birthday=date(1990, 3, 15), timezone="Europe/London")
    leap = make.member(birthday=date(1992, 2, 29), timezone="UTC")

    def scan(at: datetime) -> None:
        run_chunks(lambda cursor: triggers.birthdays_chunk(cursor, at), what="birthdays")

    scan(now)
    assert entered(party.id) == [(tokyo.id, "birthday")]
    scan(now + timedelta(hours=1))  # the 15th in London now; Tokyo already had theirs
    scan(now + timedelta(hours=2))
    assert sorted(entered(party.id)) == sorted([(tokyo.id, "birthday"), (london.id, "birthday")])
    scan(datetime(2031, 2, 28, 12, tzinfo=UTC))  # 29 February in a common year: the 28th
    assert (leap.id, "birthday") in entered(party.id)


def test_no_purchase_for_n_days_enters_each_lapse_once(app, client, make):
    lapsed = journey(ONE_POINT, trigger="no_purchase", trigger_days=30, reentry="always")
    member = make.member()
    base_rate()
    pos = make.api_key(scopes.ORDERS_WRITE)
    body = order_body({"member_id": member.id})
    assert client.post("/v1/orders", json=body, headers=idem(pos)).status_code == 201
    profiles.refresh_people([member.id], utcnow())
    db.session.commit()

    def scan(at: datetime) -> None:
        run_chunks(lambda cursor: triggers.lapsed_chunk(cursor, at), what="lapsed")

    scan(utcnow() + timedelta(days=29))
    assert entered(lapsed.id) == []
    scan(utcnow() + timedelta(days=30, hours=1))
    scan(utcnow() + timedelta(days=31))  # the same lapse: once
    assert entered(lapsed.id) == [(member.id, "lapsed")]
    scan(utcnow() + timedelta(days=40))  # past the scan's window
    assert entered(lapsed.id) == [(member.id, "lapsed")]


def test_a_scan_walks_members_in_chunks(app, make):
    party = journey(ONE_POINT, trigger="birthday")
    today = utcnow().date()
    people = [make.member(birthday=date(1990, today.month, min(today.day, 28))) for _ in range(5)]
    now = datetime.combine(
        date(today.year, today.month, min(today.day, 28)), datetime.min.time(), tzinfo=UTC
    ) + timedelta(hours=12)
    result = run_chunks(
        lambda cursor: triggers.birthdays_chunk(cursor, now, limit=2),
        what="birthdays",
        cursor=BatchCursor(),
    )
    assert result.chunks == 4  # 2 + 2 + 1, then an empty chunk
    assert sorted(m for m, _ in entered(party.id)) == sorted(p.id for p in people)
