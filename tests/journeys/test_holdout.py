"""A journey's control group: a deterministic share of the people its trigger brings in is
recorded as held out, runs no step (no message, no code, no points), and the results
compare the entries that went through the journey with the control group's, as campaign
results do."""

from __future__ import annotations

import sqlalchemy as sa

from campaigns import delivery, journeys
from campaigns.journey_models import JourneyStepRun
from loyalty.auth import scopes
from loyalty.db import db
from loyalty.ledger.operations import member_balance
from tests.earning.factories import base_rate, order_body
from tests.factories import idem
from tests.journeys.helpers import Clock, advance, consent, entries, journey, messages

STEPS = [
    {"type": "message", "template": "welcome", "channels": ["email"]},
    {"type": "points", "points": 25},
    {"type": "wait", "days": 1},
    {"type": "message", "template": "coupon_reminder", "channels": ["email"]},
]


def test_held_out_people_are_recorded_and_get_no_message_code_or_points(client, make):
    clock = Clock()
    flow = journey(STEPS, trigger="member.enrolled", holdout_pct=30)
    people = [make.member().id for _ in range(40)]
    for member_id in people:
        consent(member_id, "email")
    journeys.enter_manually(flow.id, people, cause="t", now=clock.now)
    db.session.commit()
    expected = {m for m in people if journeys.is_held_out(flow, m)}
    assert 0 < len(expected) < len(people)  # 30 % of 40, by the hash

    advance(clock.now)
    advance(clock.advance(days=1))
    advance(clock.advance(days=1))  # the same moments again run nothing twice

    by_member = {entry.member_id: entry for entry in entries(flow.id)}
    assert {m for m, e in by_member.items() if e.status == "held_out"} == expected
    assert {e.status for m, e in by_member.items() if m not in expected} == {"completed"}
    for member_id in people:
        if member_id in expected:
            assert messages(member_id) == []
            assert member_balance(member_id).available == 0
        else:
            assert messages(member_id) == [("welcome", "email"), ("coupon_reminder", "email")]
            assert member_balance(member_id).available == 25
    held_entries = [e.id for m, e in by_member.items() if m in expected]
    ran = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(JourneyStepRun)
        .where(JourneyStepRun.entry_id.in_(held_entries))
    )
    assert ran == 0

    # The same cause again enters nobody twice, the control group included.
    again = journeys.enter_manually(flow.id, people, cause="t", now=clock.now)
    assert again == []


def test_the_control_group_is_deterministic_per_journey_and_differs_from_a_campaigns(app):
    class Flow:
        def __init__(self, journey_id: int, holdout_pct: int) -> None:
            self.id, self.holdout_pct = journey_id, holdout_pct

    people = range(1, 20_001)
    held = {p for p in people if journeys.is_held_out(Flow(7, 10), p)}
    assert held == {p for p in people if journeys.is_held_out(Flow(7, 10), p)}
    assert 1_800 < len(held) < 2_200  # 10 %, spread evenly
    assert held != {p for p in people if journeys.is_held_out(Flow(8, 10), p)}
    campaign = {p for p in people if delivery.is_held_out(7, p, 10)}
    assert len(held & campaign) < 400  # independent groups overlap by about 1 %
    assert not any(journeys.is_held_out(Flow(7, 0), p) for p in people)


def test_results_compare_entries_through_the_journey_with_the_control_group(client, make):
    marketer = make.api_key(scopes.JOURNEYS_READ, scopes.JOURNEYS_WRITE)
    created = client.post(
        "/v1/journeys",
        json={"name": "Welcome", "trigger": "manual", "steps": STEPS[:2]},
        headers=idem(marketer),
    )
    assert created.status_code == 201
    assert (created.json["holdout_pct"], created.json["attribution_days"]) == (10, 7)
    changed = client.post(
        "/v1/journeys",
        json={"name": "W", "trigger": "manual", "steps": STEPS[:2], "holdout_pct": 51},
        headers=idem(marketer),
    )
    assert changed.status_code == 422

    flow = journeys.get_journey(created.json["id"])
    journeys.set_status(flow.id, "active", now=Clock().now)
    db.session.commit()
    people = [make.member().id for _ in range(30)]
    entered = client.post(
        f"/v1/journeys/{flow.id}/entries", json={"member_ids": people}, headers=idem(marketer)
    )
    assert entered.status_code == 201
    advance(Clock().now)
    held = [m for m in people if journeys.is_held_out(flow, m)]
    treated = [m for m in people if m not in held]
    assert held and treated

    base_rate()
    pos = make.api_key(scopes.ORDERS_WRITE)
    for member_id in (treated[0], treated[1], held[0]):
        body = order_body({"member_id": member_id})
        assert client.post("/v1/orders", json=body, headers=idem(pos)).status_code == 201

    results = client.get(f"/v1/journeys/{flow.id}/results", headers=marketer).json
    assert results["entered"] == 30
    assert results["held_out"] == len(held)
    assert results["entries"]["held_out"] == len(held)
    conversion = results["conversion"]
    assert (conversion["recipients"], conversion["recipients_converted"]) == (len(treated), 2)
    assert (conversion["control"], conversion["control_converted"]) == (len(held), 1)
    assert conversion["recipients_revenue_minor"] == 2 * conversion["control_revenue_minor"] > 0
    assert conversion["lift"] == 2 / len(treated) - 1 / len(held)
    assert conversion["interval"] is not None
    assert "attribution_days" in results["attribution_rule"]

    progress = client.get(f"/v1/journeys/{flow.id}/members/{held[0]}", headers=marketer).json
    assert [(e["status"], e["history"]) for e in progress["entries"]] == [("held_out", [])]
