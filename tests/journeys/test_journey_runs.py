"""A journey run with a controllable clock: waits and conditions fire at the right times,
once; a restart in the middle changes nothing; versions keep members in flight on theirs."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from campaigns import journeys
from campaigns.journey_models import JourneyEntry, JourneyStepRun
from loyalty.auth import scopes
from loyalty.coupons.models import CouponCode
from loyalty.db import db
from loyalty.ledger.operations import member_balance
from tests.coupons.factories import offer
from tests.earning.factories import base_rate, order_body
from tests.factories import idem
from tests.journeys.helpers import Clock, advance, consent, entries, journey, messages, relay, runs

WELCOME = [
    {"type": "message", "template": "welcome", "channels": ["push", "sms", "email"]},
    {"type": "wait", "days": 3},
    {"type": "condition", "check": "purchased_since_entry", "expect": False, "otherwise": "exit"},
    {"type": "coupon", "offer_id": 0},
    {"type": "message", "template": "coupon_issued", "channels": ["email"]},
    {"type": "wait", "days": 7},
    {"type": "condition", "check": "redeemed_coupon", "expect": False, "otherwise": "exit"},
    {"type": "message", "template": "coupon_reminder", "channels": ["email"]},
]


def welcome_steps() -> list[dict]:
    steps = [dict(step) for step in WELCOME]
    steps[3]["offer_id"] = offer().id
    return steps


def test_welcome_then_a_coupon_three_days_later_unless_they_bought_then_a_reminder(client, make):
    welcome = journey(welcome_steps(), trigger="member.enrolled")
    buyer, idle = make.member(), make.member()
    for member in (buyer, idle):
        consent(member.id, "email")
    relay()  # member.enrolled -> both enter
    assert [e.member_id for e in entries(welcome.id)] == [buyer.id, idle.id]

    clock = Clock()
    advance(clock.now)
    assert messages(idle.id) == [("welcome", "email")]  # push, sms: no consent / no phone
    assert messages(buyer.id) == [("welcome", "email")]

    advance(clock.advance(days=2, hours=23))
    assert messages(idle.id) == [("welcome", "email")]  # the wait isn't over

    base_rate()
    pos = make.api_key(scopes.ORDERS_WRITE)
    posted = client.post("/v1/orders", json=order_body({"member_id": buyer.id}), headers=idem(pos))
    assert posted.status_code == 201

    advance(clock.advance(hours=1))  # 3 days after entering
    assert messages(idle.id) == [("welcome", "email"), ("coupon_issued", "email")]
    assert messages(buyer.id) == [("welcome", "email")]
    by_member = {e.member_id: e for e in entries(welcome.id)}
    assert (by_member[buyer.id].status, by_member[buyer.id].exit_reason) == (
        "exited",
        "condition not met",
    )
    idle_entry = by_member[idle.id]
    assert idle_entry.step_index == 6
    # From the time the wait began (the entry's schedule), not from when the job ran.
    assert idle_entry.next_run_at == idle_entry.entered_at + timedelta(days=3 + 7)
    code = db.session.scalar(sa.select(CouponCode).where(CouponCode.member_id == idle.id))
    assert code is not None and code.source_type == "journey"

    assert advance(clock.now) == 0  # the same moment again: nothing runs twice

    advance(clock.advance(days=7))
    assert messages(idle.id)[-1] == ("coupon_reminder", "email")
    assert runs(idle_entry.id) == [
        (0, "queued"),
        (1, "waited"),
        (2, "passed"),
        (3, "issued"),
        (4, "queued"),
        (5, "waited"),
        (6, "passed"),
        (7, "queued"),
    ]
    assert entries(welcome.id)[1].status == "completed"
    assert len(messages(idle.id)) == 3


def test_a_restart_in_the_middle_changes_nothing(app, make):
    """A worker that died mid-chunk rolled its transaction back: the next run does the
    same steps once. A run after a 'restart' (new session, nothing in memory) finds its
    place from the database."""
    clock = Clock()
    points_id = journey(
        [
            {"type": "points", "points": 50},
            {"type": "wait", "hours": 1},
            {"type": "points", "points": 70},
        ]
    ).id
    members = [make.member().id for _ in range(3)]
    journeys.enter_manually(points_id, members, cause="t", now=clock.now)
    db.session.commit()

    from loyalty.batches import BatchCursor

    journeys.advance_due_chunk(BatchCursor(), clock.now)  # the worker dies before commit
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(JourneyStepRun)) == 0

    advance(clock.now)
    db.session.remove()  # a restarted process: no state but the database's
    advance(clock.now)
    assert [member_balance(m).available for m in members] == [50, 50, 50]
    advance(clock.advance(minutes=59))
    assert [member_balance(m).available for m in members] == [50, 50, 50]
    db.session.remove()
    advance(clock.advance(minutes=1))
    advance(clock.now)
    assert [member_balance(m).available for m in members] == [120, 120, 120]
    assert {e.status for e in entries(points_id)} == {"completed"}


def test_editing_a_live_journey_makes_a_version_members_in_flight_stay_on_theirs(app, make):
    clock = Clock()
    flow = journey([{"type": "wait", "days": 1}, {"type": "points", "points": 10}])
    early, late = make.member(), make.member()
    journeys.enter_manually(flow.id, [early.id], cause="a", now=clock.now)
    advance(clock.now)
    journeys.new_version(
        flow.id, [{"type": "wait", "days": 1}, {"type": "points", "points": 99}], now=clock.now
    )
    journeys.enter_manually(flow.id, [late.id], cause="b", now=clock.now)
    db.session.commit()
    advance(clock.advance(days=1))
    assert member_balance(early.id).available == 10  # version 1
    assert member_balance(late.id).available == 99  # version 2
    assert [e.version for e in entries(flow.id)] == [1, 2]


def test_a_paused_journey_runs_nothing_and_resumes_where_it_was(app, make):
    clock = Clock()
    flow = journey([{"type": "wait", "hours": 2}, {"type": "points", "points": 5}])
    member = make.member()
    journeys.enter_manually(flow.id, [member.id], cause="a", now=clock.now)
    advance(clock.now)
    journeys.set_status(flow.id, "paused", now=clock.now)
    db.session.commit()
    advance(clock.advance(hours=3))
    assert member_balance(member.id).available == 0
    journeys.set_status(flow.id, "active", now=clock.now)
    db.session.commit()
    advance(clock.now)
    assert member_balance(member.id).available == 5


def test_a_segment_condition_and_a_failed_step_never_block_the_journey(app, make):
    clock = Clock()
    flow = journey(
        [
            {"type": "coupon", "offer_id": 999_999},  # no such offer: recorded as failed
            {
                "type": "condition",
                "check": "segment",
                "rule": {"field": "region", "op": "eq", "value": "north"},
                "otherwise": 3,
            },
            {"type": "points", "points": 7},
            {"type": "points", "points": 1},
        ]
    )
    north, south = make.member(region="north"), make.member(region="south")
    journeys.enter_manually(flow.id, [north.id, south.id], cause="a", now=clock.now)
    advance(clock.now)
    assert member_balance(north.id).available == 8
    assert member_balance(south.id).available == 1
    north_entry = next(e for e in entries(flow.id) if e.member_id == north.id)
    assert runs(north_entry.id) == [(0, "failed"), (1, "passed"), (2, "credited"), (3, "credited")]


def test_entries_are_once_per_cause_and_follow_the_reentry_rule(app, make):
    clock = Clock()
    never = journey([{"type": "points", "points": 1}], reentry="never")
    after = journey([{"type": "points", "points": 1}], reentry="after_days", reentry_days=10)
    always = journey([{"type": "points", "points": 1}], reentry="always")
    member = make.member()
    for flow in (never, after, always):
        assert journeys.enter(flow, member.id, cause_key="c1", now=clock.now) is not None
        assert journeys.enter(flow, member.id, cause_key="c1", now=clock.now) is None  # same cause
    advance(clock.now)
    clock.advance(days=5)
    assert journeys.enter(never, member.id, cause_key="c2", now=clock.now) is None
    assert journeys.enter(after, member.id, cause_key="c2", now=clock.now) is None
    assert journeys.enter(always, member.id, cause_key="c2", now=clock.now) is not None
    clock.advance(days=5)
    assert journeys.enter(never, member.id, cause_key="c3", now=clock.now) is None
    assert journeys.enter(after, member.id, cause_key="c3", now=clock.now) is not None
    db.session.commit()
    counts = dict(
        db.session.execute(
            sa.select(JourneyEntry.journey_id, sa.func.count()).group_by(JourneyEntry.journey_id)
        ).all()
    )
    assert counts == {never.id: 1, after.id: 2, always.id: 2}


def _statements(run) -> int:
    """How many statements `run()` sends to the database."""
    count = 0

    def listener(conn, cursor, statement, parameters, context, executemany) -> None:
        nonlocal count
        count += 1

    sa.event.listen(db.engine, "before_cursor_execute", listener)
    try:
        run()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listener)
    return count


def test_a_chunk_of_message_steps_costs_the_same_statements_for_5_or_40_members(app, make):
    """No N+1: the chunk's members are locked in one statement, their entries in another,
    consents and destinations read once, the messages and step runs inserted together."""
    from loyalty.batches import BatchCursor

    clock = Clock()
    costs = []
    for size in (5, 40):
        flow = journey(
            [
                {"type": "message", "template": "welcome", "channels": ["push", "sms", "email"]},
                {"type": "wait", "days": 1},
            ]
        )
        people = [make.member().id for _ in range(size)]
        for member_id in people[::2]:
            consent(member_id, "email")
        journeys.enter_manually(flow.id, people, cause="n", now=clock.now)
        db.session.commit()
        costs.append(
            _statements(lambda: journeys.advance_due_chunk(BatchCursor(), clock.now, limit=500))
        )
        db.session.commit()
        queued = [m for m in people if messages(m) == [("welcome", "email")]]
        assert queued == people[::2]  # the others: no consent, suppressed and recorded
        assert {outcome for e in entries(flow.id) for _, outcome in runs(e.id)} == {
            "queued",
            "suppressed",
            "waited",
        }
    assert costs[1] == costs[0] < 25


def test_announcing_to_a_segment_enters_5_or_40_members_for_the_same_statements(app, make):
    """A launch's announcement: the segment's audience enters in one locking read, one
    re-entry read and one insert per chunk (the control group's entries included); a
    second pass enters nobody twice."""
    from campaigns import profiles, segments, triggers
    from loyalty.batches import BatchCursor
    from loyalty.clock import utcnow

    costs = []
    for size, region in ((5, "north"), (40, "south")):
        people = [make.member(region=region).id for _ in range(size)]
        profiles.refresh_people(people, utcnow())
        segment = segments.create_segment(
            {"name": region, "kind": "dynamic", "rule": {"field": "region", "op": "eq",
             "value": region}},
            now=utcnow(),
            actor="test",
        )  # fmt: skip
        flow = journey(
            [{"type": "points", "points": 1}],
            trigger="segment",
            segment_id=segment.id,
            holdout_pct=20,
        )
        costs.append(
            _statements(
                lambda flow=flow: triggers.segment_audience_chunk(flow.id, BatchCursor(), utcnow())
            )
        )
        db.session.commit()
        made = {e.member_id: e.status for e in entries(flow.id)}
        assert sorted(made) == people
        assert {m for m, status in made.items() if status == "held_out"} == {
            m for m in people if journeys.is_held_out(flow, m)
        }
        assert triggers.segment_audience_chunk(flow.id, BatchCursor(), utcnow()) == 0
    assert costs[1] == costs[0] < 15


def test_a_rounds_coupon_steps_are_issued_in_one_batch_per_offer_and_store_set(app, make):
    """Book online, experience in store to many members: their codes come from one
    `issue_to_members` per offer and store set (one batch, one lock of the offer), each
    member's message after it carries their own code; a member without any nearest store
    fails that step alone (recorded) and goes on."""
    from loyalty.coupons.models import CouponBatch

    for store_id in ("N1", "N2", "N3"):
        make.store(store_id, region="north")
    flow = journey(
        [
            {"type": "coupon", "offer_id": offer().id, "nearest_stores": 2},
            {"type": "message", "template": "campaign_offer", "channels": ["email"]},
        ]
    )
    north = [make.member(region="north").id for _ in range(6)]
    nowhere = make.member().id
    for member_id in [*north, nowhere]:
        consent(member_id, "email")
    batches_before = db.session.scalar(sa.select(sa.func.count()).select_from(CouponBatch))
    journeys.enter_manually(flow.id, [*north, nowhere], cause="b", now=Clock().now)
    db.session.commit()
    advance(Clock().now)

    batches = db.session.scalar(sa.select(sa.func.count()).select_from(CouponBatch))
    assert batches - batches_before == 1
    codes = {
        c.member_id: c
        for c in db.session.scalars(sa.select(CouponCode).where(CouponCode.member_id.in_(north)))
    }
    assert sorted(codes) == north and {tuple(c.store_ids) for c in codes.values()} == {("N1", "N2")}
    from notifications.models import Message

    for message in db.session.scalars(sa.select(Message).where(Message.member_id.in_(north))):
        assert message.variables["coupon_code"] == codes[message.member_id].code
    stranded = next(e for e in entries(flow.id) if e.member_id == nowhere)
    assert runs(stranded.id) == [(0, "failed"), (1, "queued")]
