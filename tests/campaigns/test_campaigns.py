"""Campaigns: the lifecycle over the API, the fan-out (one message per eligible person per
run, on the first consented and reachable channel; the control group and members without
consent none), pause and resume, versioned edits, codes without outbox events, schedules,
and who may call what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns import delivery, lifecycle
from campaigns.engine_models import Campaign, CampaignRecipient
from loyalty.auth import scopes
from loyalty.coupons.models import CouponCode
from loyalty.db import db
from loyalty.outbox.models import OutboxEvent
from notifications.providers.base import Channel
from tests.campaigns.campaign_factories import (
    body,
    campaign_messages,
    consent,
    deliver,
    phone,
    recipients,
    segment,
)
from tests.coupons import factories as coupons
from tests.factories import idem

PROBLEM = "application/problem+json"


@pytest.fixture
def marketer(make):
    return make.api_key(scopes.CAMPAIGNS_READ, scopes.CAMPAIGNS_WRITE)


@pytest.fixture
def analyst(make):
    return make.api_key(scopes.CAMPAIGNS_READ)


@pytest.fixture
def audience(make):
    """Six northerners: two SMS opt-ins with a phone, one email opt-in, one SMS opt-in
    without a phone (email consent none), one without any consent; one southerner."""
    sms = [make.member(region="north", phone=phone()) for i in range(2)]
    email = make.member(region="north")
    no_phone = make.member(region="north")
    silent = make.member(region="north", phone=phone())
    south = make.member(region="south", phone=phone())
    for member in (*sms, south):
        consent(member.id, Channel.SMS)
    consent(email.id, Channel.EMAIL)
    consent(no_phone.id, Channel.SMS)
    return {"sms": sms, "email": email, "no_phone": no_phone, "silent": silent, "south": south}


def _create(client, headers, data):
    response = client.post("/v1/campaigns", json=data, headers=idem(headers))
    assert response.status_code == 201, response.json
    return response.json


def _post(client, headers, campaign_id, action):
    return client.post(f"/v1/campaigns/{campaign_id}/{action}", headers=headers)


def test_a_launched_campaign_messages_each_eligible_person_once_on_their_channel(
    client, marketer, audience
):
    created = _create(client, marketer, body(segment()))
    assert (created["status"], created["version"]) == ("draft", 1)
    assert created["attribution_rule"].startswith("An order is attributed")

    launched = _post(client, marketer, created["id"], "launch")
    assert launched.status_code == 200, launched.json
    assert launched.json["status"] == "scheduled"
    deliver()
    deliver()  # a second job run finds nothing to do
    assert client.get(f"/v1/campaigns/{created['id']}", headers=marketer).json["status"] == (
        "completed"
    )

    rows = recipients(created["id"])
    assert len(rows) == 5  # the northerners, snapshotted at the run's start
    by_member = {m.id: rows[m.id] for m in (*audience["sms"], audience["email"])}
    messages = campaign_messages(created["id"])
    assert sorted((m.member_id, m.channel) for m in messages) == sorted(
        [(m.id, "sms") for m in audience["sms"]] + [(audience["email"].id, "email")]
    )
    assert all(m.purpose == "marketing" and m.template == "campaign_offer" for m in messages)
    assert {r.status for r in by_member.values()} == {"queued"}
    assert rows[audience["silent"].id].reason == "no marketing consent on sms, email"
    assert rows[audience["no_phone"].id].reason == "no destination on a consented channel (sms)"


def test_the_control_group_is_a_deterministic_hash_and_gets_nothing(app, client, marketer, make):
    people = [make.member(region="north", phone=phone()) for i in range(200)]
    for person in people:
        consent(person.id, Channel.SMS)
    created = _create(client, marketer, body(segment(), holdout_pct=20))
    _post(client, marketer, created["id"], "launch")
    deliver()

    rows = recipients(created["id"])
    held = {m for m, r in rows.items() if r.status == "held_out"}
    assert held == {
        p.id for p in people if delivery.is_held_out(created["id"], p.id, 20)
    }  # SQL and Python agree on the hash
    assert 20 <= len(held) <= 60  # about 20 % of 200
    messaged = {m.member_id for m in campaign_messages(created["id"])}
    assert messaged == {p.id for p in people} - held


def test_pause_and_resume_in_the_middle_neither_skip_nor_repeat_anyone(client, marketer, make):
    people = [make.member(region="north", phone=phone()) for i in range(30)]
    for person in people:
        consent(person.id, Channel.SMS)
    created = _create(client, marketer, body(segment()))
    _post(client, marketer, created["id"], "launch")
    deliver(size=10, chunks=1)
    assert len(campaign_messages(created["id"])) == 10

    paused = _post(client, marketer, created["id"], "pause")
    assert paused.json["status"] == "paused"
    deliver(size=10)
    assert len(campaign_messages(created["id"])) == 10  # nothing while paused

    assert _post(client, marketer, created["id"], "resume").json["status"] == "running"
    deliver(size=10)
    messages = campaign_messages(created["id"])
    assert sorted(m.member_id for m in messages) == sorted(p.id for p in people)
    assert client.get(f"/v1/campaigns/{created['id']}", headers=marketer).json["status"] == (
        "completed"
    )
    activity = client.get(f"/v1/campaigns/{created['id']}/activity", headers=marketer).json
    assert [t["to_status"] for t in activity["transitions"]] == [
        "scheduled", "running", "paused", "running", "completed",
    ]  # fmt: skip
    assert activity["runs"][0]["audience"] == 30


def test_editing_a_running_campaign_makes_a_new_content_version(client, marketer, make):
    people = [make.member(region="north", phone=phone()) for i in range(4)]
    for person in people:
        consent(person.id, Channel.SMS)
    created = _create(client, marketer, body(segment()))
    _post(client, marketer, created["id"], "launch")
    deliver(size=2, chunks=1)

    content = {
        "variants": [
            {"name": "B", "templates": {"sms": "coupon_issued", "email": "campaign_offer"}}
        ]
    }
    edited = client.patch(
        f"/v1/campaigns/{created['id']}", json={"content": content}, headers=idem(marketer)
    )
    assert edited.status_code == 200, edited.json
    assert edited.json["version"] == 2
    refused = client.patch(
        f"/v1/campaigns/{created['id']}", json={"holdout_pct": 30}, headers=idem(marketer)
    )
    assert refused.status_code == 409 and refused.json["campaign_status"] == "running"
    deliver()

    rows = sorted(recipients(created["id"]).values(), key=lambda r: r.member_id)
    assert [r.version for r in rows] == [1, 1, 2, 2]
    assert [m.template for m in campaign_messages(created["id"])] == [
        "campaign_offer", "campaign_offer", "coupon_issued", "coupon_issued",
    ]  # fmt: skip
    versions = client.get(f"/v1/campaigns/{created['id']}/versions", headers=marketer).json
    assert [v["version"] for v in versions["items"]] == [1, 2]


def test_a_coupon_campaign_issues_one_code_per_recipient_without_outbox_events(
    client, marketer, audience
):
    offer = coupons.offer(name="Spring 10 %")
    outbox_before = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxEvent))
    created = _create(
        client, marketer, body(segment(), offer={"kind": "coupon", "offer_id": offer.id})
    )
    _post(client, marketer, created["id"], "launch")
    deliver()

    codes = db.session.scalars(sa.select(CouponCode).where(CouponCode.campaign_id == created["id"]))
    owners = sorted(code.member_id for code in codes)
    assert owners == sorted([*(m.id for m in audience["sms"]), audience["email"].id])
    coupon_events = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(OutboxEvent)
        .where(OutboxEvent.topic == "coupon.issued")
    )
    assert coupon_events == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxEvent)) == outbox_before
    for message in campaign_messages(created["id"]):
        assert isinstance(message.variables["coupon_id"], int)


def test_a_points_campaign_credits_the_bonus_through_the_ledger(client, marketer, audience):
    from loyalty.ledger.operations import member_balance

    created = _create(client, marketer, body(segment(), offer={"kind": "points", "points": 250}))
    _post(client, marketer, created["id"], "launch")
    deliver()
    assert member_balance(audience["sms"][0].id).balance == 250
    assert member_balance(audience["silent"].id).balance == 0  # not messaged: no bonus
    from loyalty.outbox.models import OutboxEvent as Event
    from notifications.consumers import message_for

    earned = db.session.scalars(sa.select(Event).where(Event.topic == "points.earned")).all()
    assert len(earned) == 3 and all(message_for(e) is None for e in earned)  # no 2nd message


def test_lifecycle_changes_are_conditional_on_the_state(client, marketer, audience):
    created = _create(client, marketer, body(segment()))
    paused = _post(client, marketer, created["id"], "pause")
    assert paused.status_code == 409
    assert paused.content_type == PROBLEM and paused.json["campaign_status"] == "draft"
    assert _post(client, marketer, created["id"], "launch").status_code == 200
    assert _post(client, marketer, created["id"], "launch").status_code == 409
    cancelled = _post(client, marketer, created["id"], "cancel")
    assert cancelled.json["status"] == "cancelled"
    deliver()
    assert recipients(created["id"]) == {}  # cancelled before its run started
    assert _post(client, marketer, created["id"], "resume").status_code == 409


def test_cancelling_a_running_campaign_leaves_the_rest_unreached(client, marketer, make):
    people = [make.member(region="north", phone=phone()) for i in range(6)]
    for person in people:
        consent(person.id, Channel.SMS)
    created = _create(client, marketer, body(segment()))
    _post(client, marketer, created["id"], "launch")
    deliver(size=2, chunks=1)
    _post(client, marketer, created["id"], "cancel")
    deliver()
    statuses = sorted(r.status for r in recipients(created["id"]).values())
    assert statuses == ["cancelled"] * 4 + ["queued"] * 2


def test_recurring_schedules_run_again_at_the_next_slot(app, make):
    start = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # a Monday
    campaign = Campaign(
        schedule_kind="weekly", schedule_at=start, schedule_timezone="Europe/Berlin",
        schedule_until=None,
    )  # fmt: skip
    assert lifecycle.recurrence(campaign) == "30 10 * * 1"
    assert lifecycle.next_run(campaign, start - timedelta(days=3), first=True) == start
    assert lifecycle.next_run(campaign, start, first=False) == start + timedelta(days=7)
    cron = Campaign(schedule_kind="cron", schedule_cron="0 8 * * *", schedule_timezone="UTC",
                    schedule_at=None, schedule_until=start + timedelta(days=2))  # fmt: skip
    assert lifecycle.next_run(cron, start, first=True) == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    assert lifecycle.next_run(cron, datetime(2026, 3, 4, 8, 0, tzinfo=UTC), first=False) is None


def test_a_daily_campaign_messages_again_in_its_next_run(client, marketer, audience):
    now = datetime.now(UTC)
    created = _create(
        client,
        marketer,
        body(segment(), schedule={"kind": "daily", "at": now.isoformat()}),
    )
    _post(client, marketer, created["id"], "launch")
    deliver(now + timedelta(minutes=1))
    campaign = client.get(f"/v1/campaigns/{created['id']}", headers=marketer).json
    assert campaign["status"] == "scheduled"
    assert campaign["next_run_at"].startswith((now + timedelta(days=1)).date().isoformat())
    deliver(now + timedelta(days=1, minutes=1))
    keys = sorted(m.dedupe_key.split(":")[2] for m in campaign_messages(created["id"]))
    assert keys == ["1"] * 3 + ["2"] * 3  # one message per eligible person per run


def test_who_may_call_what(client, make, marketer, analyst, audience):
    created = _create(client, marketer, body(segment()))
    campaign_id = created["id"]
    assert client.get(f"/v1/campaigns/{campaign_id}", headers=analyst).status_code == 200
    assert client.get(f"/v1/campaigns/{campaign_id}/results", headers=analyst).status_code == 200
    refused = client.post("/v1/campaigns", json=body(segment("B")), headers=idem(analyst))
    assert refused.status_code == 403
    assert _post(client, analyst, campaign_id, "launch").status_code == 403
    segments_only = make.api_key(scopes.SEGMENTS_READ, scopes.SEGMENTS_WRITE)
    assert client.get(f"/v1/campaigns/{campaign_id}", headers=segments_only).status_code == 403
    store_key = make.api_key(*scopes.POS, store_id=make.store().id)
    assert client.get("/v1/campaigns", headers=store_key).status_code == 403
    member = make.member_token(audience["sms"][0].id)
    assert client.get(f"/v1/campaigns/{campaign_id}", headers=member).status_code in (401, 403)
    assert client.get("/v1/campaigns/999999", headers=analyst).status_code == 404
    assert client.get(f"/v1/campaigns/{campaign_id}").status_code == 401


def test_a_campaign_names_an_existing_segment_and_templates(client, marketer):
    bad = {**body(segment()), "segment_id": 424242}
    assert client.post("/v1/campaigns", json=bad, headers=idem(marketer)).status_code == 422
    content = {"variants": [{"name": "A", "templates": {"sms": "no_such_template"}}]}
    response = client.post(
        "/v1/campaigns",
        json=body(segment("S"), content=content, channel_order=["sms"]),
        headers=idem(marketer),
    )
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "content.variants[0].templates.sms"
    trigger = body(segment("T"), schedule={"kind": "trigger"})
    assert client.post("/v1/campaigns", json=trigger, headers=idem(marketer)).status_code == 422


def test_ab_variants_split_by_weight(client, marketer, make):
    people = [make.member(region="north", phone=phone()) for i in range(300)]
    for person in people:
        consent(person.id, Channel.SMS)
    templates = {"sms": "campaign_offer", "email": "campaign_offer"}
    content = {
        "variants": [
            {"name": "A", "weight": 3, "templates": templates},
            {"name": "B", "weight": 1, "templates": templates},
        ]
    }
    created = _create(client, marketer, body(segment(), content=content))
    _post(client, marketer, created["id"], "launch")
    deliver()
    variants = [r.variant for r in recipients(created["id"]).values()]
    assert 180 <= variants.count("A") <= 270 and variants.count("A") + variants.count("B") == 300
    assert {m.variables["variant"] for m in campaign_messages(created["id"])} == {"A", "B"}


def test_a_merged_member_is_messaged_once_as_the_person(client, marketer, make):
    from loyalty.members.merge import merge_members

    first = make.member(region="north", phone=phone())
    second = make.member(region="north", phone=phone())
    consent(first.id, Channel.SMS)
    consent(second.id, Channel.SMS)
    created = _create(client, marketer, body(segment()))
    _post(client, marketer, created["id"], "launch")
    delivery.start_due_runs(datetime.now(UTC))
    db.session.commit()
    merge_members(first.id, second.id, now=datetime.now(UTC), actor="test", reason="dup")
    db.session.commit()
    deliver()
    messages = campaign_messages(created["id"])
    assert [m.member_id for m in messages] == [first.id]
    rows = db.session.scalars(
        sa.select(CampaignRecipient).where(CampaignRecipient.campaign_id == created["id"])
    ).all()
    assert sorted(r.status for r in rows) == ["queued", "suppressed"]


def test_a_multiplier_campaign_multiplies_its_recipients_points_for_its_window(
    client, marketer, make, audience
):
    from tests.earning import factories as earning_factories
    from tests.earning.factories import order_body

    earning_factories.base_rate()  # 1 point per 100 minor units
    offer = {"kind": "multiplier", "multiplier_pct": 200, "days": 7}
    created = _create(client, marketer, body(segment(), offer=offer))
    _post(client, marketer, created["id"], "launch")
    deliver()
    pos = make.api_key(scopes.ORDERS_WRITE)

    def points(member_id: int) -> int:
        response = client.post(
            "/v1/orders", json=order_body({"member_id": member_id}), headers=idem(pos)
        )
        assert response.status_code == 201, response.json
        return response.json["points_earned"]

    assert points(audience["sms"][0].id) == 200  # messaged: double points
    assert points(audience["silent"].id) == 100  # not messaged (no consent): no multiplier
    assert points(audience["south"].id) == 100  # not in the audience


def test_the_control_group_is_on_by_default(client, marketer):
    data = body(segment())
    del data["holdout_pct"]
    created = _create(client, marketer, data)
    assert created["holdout_pct"] == 10


def test_an_at_campaign_waits_for_its_time_and_snapshots_its_audience_then(
    client, marketer, make, audience
):
    now = datetime.now(UTC)
    at = now + timedelta(hours=2)
    created = _create(
        client, marketer, body(segment(), schedule={"kind": "at", "at": at.isoformat()})
    )
    launched = _post(client, marketer, created["id"], "launch")
    assert launched.json["status"] == "scheduled"
    assert launched.json["next_run_at"].startswith(at.isoformat()[:16])
    deliver(now + timedelta(hours=1))
    assert recipients(created["id"]) == {}  # not yet: nothing snapshotted, nobody messaged
    late = make.member(region="north", phone=phone())  # joins the segment before the run
    consent(late.id, Channel.SMS)

    deliver(at + timedelta(minutes=1))
    rows = recipients(created["id"])
    assert late.id in rows and rows[late.id].status == "queued"
    assert len(rows) == 6
    assert client.get(f"/v1/campaigns/{created['id']}", headers=marketer).json["status"] == (
        "completed"
    )
    refused = client.post(
        "/v1/campaigns",
        json=body(
            segment("past"), schedule={"kind": "at", "at": (now - timedelta(hours=1)).isoformat()}
        ),
        headers=idem(marketer),
    )
    assert _post(client, marketer, refused.json["id"], "launch").status_code == 422


def test_a_store_bound_key_cannot_reach_campaigns_of_the_whole_program(client, make, marketer):
    """A campaign messages members of every store: a key bound to one store is refused the
    campaign endpoints even when it holds their scopes."""
    created = _create(client, marketer, body(segment()))
    store_key = make.api_key(
        scopes.CAMPAIGNS_READ, scopes.CAMPAIGNS_WRITE, store_id=make.store().id
    )
    for response in (
        client.get("/v1/campaigns", headers=store_key),
        client.get(f"/v1/campaigns/{created['id']}/results", headers=store_key),
        _post(client, store_key, created["id"], "launch"),
        client.post("/v1/campaigns", json=body(segment("B")), headers=idem(store_key)),
    ):
        assert response.status_code == 403 and response.mimetype == PROBLEM
    assert client.get(f"/v1/campaigns/{created['id']}", headers=marketer).json["status"] == "draft"


def test_a_coupon_campaign_whose_offer_ended_since_the_launch_sends_no_dead_codes(
    client, marketer, audience
):
    from loyalty.coupons.offers import update_offer

    offer = coupons.offer(name="Short-lived")
    created = _create(
        client, marketer, body(segment(), offer={"kind": "coupon", "offer_id": offer.id})
    )
    _post(client, marketer, created["id"], "launch")
    update_offer(offer.id, {"status": "ended"}, now=datetime.now(UTC), actor="test")
    db.session.commit()
    deliver()

    rows = recipients(created["id"])
    reachable = [*(m.id for m in audience["sms"]), audience["email"].id]
    assert {rows[m].reason for m in reachable} == {f"offer {offer.id} is ended"}
    assert {rows[m].status for m in reachable} == {"suppressed"}
    assert campaign_messages(created["id"]) == []
    codes = sa.select(sa.func.count()).where(CouponCode.campaign_id == created["id"])
    assert db.session.scalar(codes) == 0
