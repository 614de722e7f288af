"""Domain events become transactional messages through the outbox, once per (cause,
member, channel), with contact details read when the message is sent."""

from __future__ import annotations

import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.coupons import wallet
from loyalty.db import db
from loyalty.outbox.relay import relay_batch
from loyalty.tiers import operations as tiers
from notifications import consent
from notifications.consent import Purpose
from notifications.consumers import CONSUMER
from notifications.models import Message
from notifications.providers.base import Channel
from tests.coupons import factories as coupon_factories
from tests.earning import factories as earning_factories
from tests.earning.factories import order_body
from tests.factories import idem
from tests.notifications.factories import recorded, send_round

PHONE = "+4915112345678"


def relay() -> None:
    relay_batch(utcnow(), max_attempts=3)


def messages() -> list[tuple[str, str, str]]:
    rows = db.session.execute(
        sa.select(Message.template, Message.channel, Message.dedupe_key).order_by(Message.id)
    ).all()
    db.session.rollback()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_an_order_earning_points_sends_a_points_earned_message_on_each_reachable_channel(
    client, make
):
    member = make.member(phone=PHONE, email="ada@example.org", name="Ada")
    earning_factories.base_rate()
    posted = client.post(
        "/v1/orders", json=order_body({"member_id": member.id}),
        headers=idem(make.api_key(scopes.ORDERS_WRITE)),
    )  # fmt: skip
    assert posted.status_code == 201
    relay()
    assert [(t, c) for t, c, _ in messages()] == [
        ("points_earned", "sms"),
        ("points_earned", "email"),
    ]  # no push subscription: no push message
    send_round()
    by_channel = {r.channel: r for r in recorded()}
    assert by_channel["sms"].destination == PHONE and "100" in by_channel["sms"].body
    assert by_channel["email"].destination == "ada@example.org"
    assert by_channel["email"].subject == "You earned 100 points"
    assert "<p>" in by_channel["email"].html


def test_a_consumer_run_twice_for_one_event_queues_nothing_twice(make):
    from loyalty.outbox import Event
    from loyalty.outbox.consumers import get

    member = make.member(phone=PHONE)
    event = Event(7, "points.earned", member.id, {"points": 5, "kind": "earn"}, utcnow())
    consumer = get(CONSUMER)
    consumer.handle([event])
    db.session.commit()
    consumer.handle([event])  # the relay redelivers after a worker died before recording "done"
    db.session.commit()
    assert [k for _, _, k in messages()] == ["points.earned:7:sms", "points.earned:7:email"]


def test_a_member_who_turned_a_channel_off_gets_nothing_there(make):
    member = make.member(phone=PHONE)
    consent.record_consent(member.id, Channel.SMS, Purpose.TRANSACTIONAL, False,
                           source="app", now=utcnow(), actor=f"member:{member.id}")  # fmt: skip
    db.session.commit()
    make.earn(member.id, 50)
    relay()
    assert [c for _, c, _ in messages()] == ["email"]


def test_tier_changes_coupons_and_rewards_each_have_their_message(make):
    member = make.member(phone=PHONE, locale="zh-CN", timezone="Asia/Shanghai")
    now = utcnow()
    tiers.create_tier({"code": "gold", "name": "Gold", "rank": 1, "threshold": 100}, now=now)
    tiers.create_tier({"code": "member", "name": "Member", "rank": 0, "threshold": 0}, now=now)
    db.session.commit()
    make.earn(member.id, 150)
    tiers.reevaluate_member_tier(member.id, utcnow())  # as the order's transaction does
    db.session.commit()
    offer = coupon_factories.offer(name="十元券")
    wallet.issue_to_members(offer.id, [member.id], now=now, actor="test")
    reward = wallet.create_reward(
        {"offer_id": offer.id, "name": "Reward", "points_cost": 100, "stock": None}, now=now
    )
    db.session.commit()
    wallet.buy_reward(reward.id, member_id=member.id, now=now, actor="test")
    db.session.commit()
    relay()
    sms = [t for t, c, _ in messages() if c == "sms"]
    assert sms == ["points_earned", "tier_changed", "coupon_issued", "reward_ready"]
    send_round()
    bodies = {r.body for r in recorded() if r.channel == "sms"}
    assert any("Gold" in b and "会员等级" in b for b in bodies)
    assert any("十元券" in b and "券码" in b for b in bodies)


def test_events_without_anything_to_say_queue_nothing(make):
    member = make.member(phone=PHONE)
    offer = coupon_factories.offer()
    wallet.issue_to_members(offer.id, [member.id], now=utcnow(), actor="c", source_type="campaign")
    db.session.commit()
    relay()
    assert messages() == []  # a campaign's coupon is the campaign's to announce


def test_points_about_to_expire_are_announced_with_their_date_in_the_members_zone(make):
    from loyalty.outbox import Event
    from loyalty.outbox.consumers import get

    member = make.member(phone=PHONE, timezone="Asia/Shanghai")
    payload = {"points": 300, "expires_at": "2026-12-31T16:00:00+00:00"}
    get(CONSUMER).handle([Event(9, "points.expiring", member.id, payload, utcnow())])
    db.session.commit()
    send_round()
    sms = next(r for r in recorded() if r.channel == "sms")
    assert "300" in sms.body and "Jan 1, 2027" in sms.body
