"""Demo dashboard users, one per role, for `make run` (local demo data only)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from loyalty.dashboard import users
from loyalty.dashboard.models import ROLES, DashboardUser
from loyalty.db import db

DEMO_DOMAIN = "demo.omniloyal.test"


def demo_login(role: str) -> tuple[str, str]:
    """(email, password) of the demo user with `role`."""
    return f"{role}@{DEMO_DOMAIN}", f"demo-{role}-2026"


def ensure_demo_users(now: datetime) -> dict[str, tuple[str, str]]:
    """Create the demo users that are missing; role -> (email, password)."""
    logins = {role: demo_login(role) for role in ROLES}
    existing = set(
        db.session.scalars(
            sa.select(DashboardUser.email).where(DashboardUser.email.like(f"%@{DEMO_DOMAIN}"))
        )
    )
    for role, (email, password) in logins.items():
        if email not in existing:
            users.create_user(
                email=email,
                name=f"Demo {role}",
                password=password,
                role=role,
                locale="zh_CN" if role == "analyst" else "en",
                now=now,
            )
    return logins


DEMO_CONSENT_TEXTS = {
    ("sms", "en"): "I agree to receive offers and news by SMS. Reply STOP to opt out.",
    ("sms", "zh"): "我同意通过短信接收优惠和资讯。回复 TD 退订。",
    ("email", "en"): "I agree to receive offers and news by email; every email has an "
    "unsubscribe link.",
    ("email", "zh"): "我同意通过电子邮件接收优惠和资讯。每封邮件都附有退订链接。",
}


def ensure_demo_consent_texts(now: datetime) -> dict[str, int]:
    """The marketing consent wording of the demo (SMS and email, English and Chinese);
    channel -> the English text's id."""
    from notifications import consent_texts

    current = consent_texts.current_texts()
    ids: dict[str, int] = {}
    for (channel, locale), text in DEMO_CONSENT_TEXTS.items():
        found = current.get((channel, "marketing", locale))
        if found is None:
            found = consent_texts.publish(channel, "marketing", locale, text, actor="demo", now=now)
        if locale == "en":
            ids[channel] = found.id
    return ids


def seed_demo_campaign(now: datetime) -> int | None:
    """A delivered campaign for the demo's results page: members of the Paris region who
    agreed to marketing by SMS or email (most of them, as recorded at the till), 50 bonus
    points each, a 20 % control group. Runs through the engine's own operations."""
    from campaigns import delivery, lifecycle, segments
    from loyalty.batches import BatchCursor
    from loyalty.members.models import Member
    from notifications.consent import ConsentSource, Purpose, record_consent
    from notifications.providers.base import Channel

    people = db.session.scalars(
        sa.select(Member.id).where(Member.region == "ile-de-france", Member.status == "active")
    ).all()
    if not people:
        return None
    texts = ensure_demo_consent_texts(now)
    for n, member_id in enumerate(people):
        if n % 5 != 4:  # four in five agreed
            for channel in (Channel.SMS, Channel.EMAIL):
                record_consent(
                    member_id, channel, Purpose.MARKETING, True,
                    source=ConsentSource.IMPORT.value, now=now, actor="demo",
                    text_id=texts[channel.value],
                )  # fmt: skip
    segment = segments.create_segment(
        {"name": "Paris region", "kind": "dynamic",
         "rule": {"field": "region", "op": "eq", "value": "ile-de-france"}},
        now=now, actor="demo",
    )  # fmt: skip
    campaign = lifecycle.create_campaign(
        {
            "name": "Autumn thank-you: 50 points",
            "description": "Demo campaign, delivered by `omniloyal demo`.",
            "segment_id": segment.id,
            "offer": {"kind": "points", "points": 50},
            "channel_order": ["sms", "email"],
            "content": {
                "variants": [
                    {
                        "name": "A",
                        "weight": 1,
                        "templates": {"sms": "campaign_offer", "email": "campaign_offer"},
                    }
                ]
            },
            "schedule": {"kind": "now"},
            "holdout_pct": 20,
            "attribution_days": 7,
        },
        now=now,
        actor="demo",
    )
    lifecycle.launch(campaign.id, now=now, actor="demo")
    delivery.start_due_runs(now)
    cursor = BatchCursor()
    while True:
        before = cursor.handled
        delivery.deliver_chunk(cursor, now)
        if cursor.handled == before:
            break
    return campaign.id


WELCOME_DAYS = 21  # members who joined this recently are somewhere in the welcome series


def seed_demo_journey(now: datetime) -> int | None:
    """A running "Welcome series" for the demo: members who joined in the last three weeks
    entered it on their enrolment event, when they joined, and the engine ran their due
    steps up to now; so some got the welcome and the coupon and wait for the reminder, some
    finished, and the newest wait for their coupon. New members keep entering while `make
    run` serves. Through the journey operations: create, activate, enter, advance."""
    from campaigns import journeys
    from loyalty.batches import BatchCursor
    from loyalty.coupons.models import CouponOffer
    from loyalty.outbox.models import OutboxEvent

    offer_id = db.session.scalar(
        sa.select(CouponOffer.id).where(CouponOffer.name.like("Welcome%")).order_by(CouponOffer.id)
    )
    if offer_id is None:
        return None
    message = {"type": "message", "template": "campaign_offer", "channels": ["sms", "email"]}
    journey = journeys.create_journey(
        {
            "name": "Welcome series",
            "trigger": "member.enrolled",
            "reentry": "never",
            "steps": [
                message,  # welcome
                {"type": "wait", "days": 2},
                {"type": "coupon", "offer_id": offer_id},
                message,  # the code
                {"type": "wait", "days": 7},
                {
                    "type": "condition",
                    "check": "redeemed_coupon",
                    "expect": False,
                    "otherwise": "exit",
                },
                message,  # a reminder to those who haven't used it
                {"type": "wait", "days": 7},
                {"type": "points", "points": 50},
                message,  # 50 points to come back
            ],
        },
        now=now - timedelta(days=WELCOME_DAYS + 1),
        actor="demo",
    )
    journeys.set_status(journey.id, "active", now=now - timedelta(days=WELCOME_DAYS + 1))
    enrolments = db.session.execute(
        sa.select(OutboxEvent.id, OutboxEvent.member_id, OutboxEvent.occurred_at)
        .where(
            OutboxEvent.topic == "member.enrolled",
            OutboxEvent.occurred_at >= now - timedelta(days=WELCOME_DAYS),
        )
        .order_by(OutboxEvent.member_id)
    ).all()
    for n, (event_id, member_id, occurred_at) in enumerate(enrolments):
        if n % 5 != 4:  # four in five agreed to marketing when they joined
            _joined_with_consent(member_id, occurred_at)
        journeys.enter(journey, member_id, cause_key=f"event:{event_id}", now=occurred_at)
    cursor = BatchCursor()
    while True:
        before = cursor.handled
        journeys.advance_due_chunk(cursor, now)
        if cursor.handled == before:
            break
    return journey.id


def _joined_with_consent(member_id: int, joined_at: datetime) -> None:
    from loyalty.members.models import Member
    from notifications.consent import ConsentSource, Purpose, allows, record_consent
    from notifications.providers.base import Channel

    member = db.session.get(Member, member_id)
    if member is None or allows(member_id, Channel.EMAIL, Purpose.MARKETING):
        return  # already recorded (the Paris campaign's audience)
    source = ConsentSource.STORE if member.enrolled_channel == "store" else ConsentSource.WEB
    for channel in (Channel.SMS, Channel.EMAIL):
        record_consent(
            member_id, channel, Purpose.MARKETING, True,
            source=source.value, now=joined_at, actor="demo",
        )  # fmt: skip
