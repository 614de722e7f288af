"""What the dashboard reads of journeys: a person's newest entries (merged ids included, at
most `limit`) and each journey's entries per status and step; and a message after a coupon
or points step names them as campaign messages do."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from campaigns import journeys
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.members.merge import merge_members
from notifications.models import Message
from tests.coupons import factories as coupons
from tests.journeys.helpers import advance, consent, journey

WAIT_THEN_POINTS = [{"type": "wait", "days": 1}, {"type": "points", "points": 2}]


def test_a_persons_newest_entries_follow_merges_and_are_bounded(app, make):
    flows = [journey(WAIT_THEN_POINTS, name=f"J{n}") for n in range(3)]
    survivor, duplicate = make.member().id, make.member().id
    start = utcnow() - timedelta(days=3)
    for n, flow in enumerate(flows):
        journeys.enter_manually(flow.id, [duplicate if n == 1 else survivor], cause="x",
                                now=start + timedelta(hours=n))  # fmt: skip
    db.session.commit()
    merge_members(survivor, duplicate, reason="same", now=utcnow(), actor="t")
    db.session.commit()

    found = journeys.member_journeys(survivor, limit=10)
    assert [e["journey"] for e in found] == ["J2", "J1", "J0"]  # newest first
    assert found[1]["status"] == "active" and found[1]["step_index"] == 0
    assert found[1]["step"] == {"type": "wait", "days": 1}
    assert [e["journey"] for e in journeys.member_journeys(survivor, limit=2)] == ["J2", "J1"]
    assert journeys.member_journeys(make.member().id) == []


def test_entries_per_status_and_the_step_the_active_ones_wait_for(app, make):
    flow = journey(WAIT_THEN_POINTS)
    idle = journey(WAIT_THEN_POINTS)
    members = [make.member().id for _ in range(3)]
    journeys.enter_manually(flow.id, members[:1], cause="a", now=utcnow() - timedelta(days=2))
    journeys.enter_manually(flow.id, members[1:], cause="b", now=utcnow())
    db.session.commit()
    advance(utcnow())
    db.session.commit()

    counts = journeys.entries_per_step([flow.id, idle.id])
    assert counts[flow.id] == {
        "active": 2,
        "completed": 1,
        "exited": 0,
        "held_out": 0,
        "at_step": {1: 2},
    }
    assert counts[idle.id] == {
        "active": 0,
        "completed": 0,
        "exited": 0,
        "held_out": 0,
        "at_step": {},
    }


def test_a_message_after_a_coupon_step_carries_the_code(app, make):
    offer_id = coupons.offer().id
    flow = journey([
        {"type": "coupon", "offer_id": offer_id},
        {"type": "points", "points": 10},
        {"type": "message", "template": "campaign_offer", "channels": ["email"]},
    ])  # fmt: skip
    member_id = make.member().id
    consent(member_id, "email")
    journeys.enter_manually(flow.id, [member_id], cause="x", now=utcnow())
    db.session.commit()
    advance(utcnow())
    db.session.commit()

    message = db.session.scalar(sa.select(Message).where(Message.member_id == member_id))
    assert message.variables["coupon"]["code"] == message.variables["coupon_code"]
    assert message.variables["points"] == 10
