"""Before launch: what a campaign would do if it ran now.

One query over the audience picks, per person outside the control group, the channel the
fan-out would pick (the first of the campaign's order with a marketing opt-in and a
destination) and whether the person is at the marketing frequency cap; the rest is
arithmetic: the offer's worst case (every code redeemed at its largest discount, within the
offer's budget; every bonus point credited, a bonus-points coupon's included; null when a
multiplier makes it depend on what is bought) and the provider cost at the configured
prices.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app

from campaigns import segments
from campaigns.delivery import BUCKETS, _bucket_sql
from campaigns.engine_models import Campaign, OfferKind
from campaigns.models import Segment
from loyalty.db import db
from loyalty.members.models import IdentityKind, MemberIdentity
from notifications.consent import MemberConsent, Purpose
from notifications.models import Message
from notifications.providers.base import Channel


def _settings() -> Any:
    return current_app.extensions["omniloyal.settings"]


def _reachable(channel: Channel, person: Any, now: datetime) -> Any:
    if channel is Channel.PUSH:
        from notifications.push import PushSubscription

        subs = PushSubscription.__table__
        return sa.exists().where(
            subs.c.member_id == person, sa.or_(subs.c.expires_at.is_(None), subs.c.expires_at > now)
        )
    kind = IdentityKind.PHONE if channel is Channel.SMS else IdentityKind.EMAIL
    identities = MemberIdentity.__table__
    return sa.exists().where(identities.c.member_id == person, identities.c.kind == kind.value)


def _consented(channel: Channel, person: Any) -> Any:
    consents = MemberConsent.__table__
    return sa.exists().where(
        consents.c.member_id == person,
        consents.c.channel == channel.value,
        consents.c.purpose == Purpose.MARKETING.value,
        consents.c.granted.is_(True),
    )


def channel_choice(order: list[str], person: Any, now: datetime) -> Any:
    """SQL: the channel the fan-out would pick for `person` now, or NULL."""
    whens = [
        (sa.and_(_consented(Channel(c), person), _reachable(Channel(c), person, now)), c)
        for c in order
    ]
    return sa.case(*whens, else_=sa.null())


def estimate(campaign: Campaign, *, now: datetime) -> dict[str, Any]:
    settings = _settings()
    segment = db.session.get(Segment, campaign.segment_id)
    assert segment is not None
    people = segments.audience(segment, now).subquery()
    person = people.c.member_id
    held = _bucket_sql(campaign.id, person) < campaign.holdout_pct * BUCKETS // 100
    cap = getattr(settings, "notify_marketing_cap", None)
    if cap is not None:
        messages = Message.__table__
        sent = (
            sa.select(sa.func.count())
            .where(
                messages.c.member_id == person,
                messages.c.purpose == Purpose.MARKETING.value,
                messages.c.sent_at >= now - cap.window,
            )
            .scalar_subquery()
        )
        capped = sa.case((sent >= cap.limit, 1), else_=0)
    else:
        capped = sa.literal(0)
    choice = channel_choice(campaign.channel_order, person, now)
    rows = db.session.execute(
        sa.select(
            sa.case((held, 1), else_=0).label("held"),
            choice.label("channel"),
            capped.label("capped"),
            sa.func.count(),
        )
        .select_from(people)
        .group_by("held", "channel", "capped")
    ).all()
    audience = held_out = no_channel = at_cap = 0
    per_channel = {c.value: 0 for c in Channel}
    for is_held, channel, is_capped, count in rows:
        audience += count
        if is_held:
            held_out += count
        elif channel is None:
            no_channel += count
        elif is_capped:
            at_cap += count
        else:
            per_channel[channel] += count
    messages_total = sum(per_channel.values())
    prices = settings.campaign_message_prices
    return {
        "evaluated_at": now,
        "audience": audience,
        "held_out": held_out,
        "messages": per_channel,
        "no_channel": no_channel,
        "capped": at_cap,
        "max_discount_minor": max_discount(campaign, messages_total),
        "max_points": max_points(campaign, messages_total),
        "cost_minor": sum(per_channel[c] * prices.get(c, 0) for c in per_channel),
        "prices_minor": dict(prices),
    }


def max_points(campaign: Campaign, messages: int) -> int | None:
    """The most points the campaign can credit for `messages` recipients: its bonus points,
    or a bonus-points coupon's points per code. None: unbounded, because it depends on
    what is bought (an earn multiplier, the campaign's own or a multiplier coupon's)."""
    kind = OfferKind(campaign.offer_kind)
    if kind is OfferKind.POINTS:
        return campaign.bonus_points * messages
    if kind is OfferKind.MULTIPLIER:
        return None
    if kind is not OfferKind.COUPON or campaign.offer_id is None:
        return 0
    from loyalty.coupons.discounts import OfferKind as CouponKind
    from loyalty.coupons.offers import current_terms, get_offer

    terms = current_terms(get_offer(campaign.offer_id))
    if terms.kind is CouponKind.BONUS_POINTS:
        return (terms.bonus_points or 0) * messages
    if terms.kind is CouponKind.POINTS_MULTIPLIER:
        return None
    return 0


def max_discount(campaign: Campaign, codes: int) -> int | None:
    """The most `codes` single-use codes of the campaign's offer can cost: each at its
    largest discount (a percent offer needs its cap to be bounded), never past what is
    left of the offer's budget. None: unbounded (a percent offer without cap or budget)."""
    if campaign.offer_kind != OfferKind.COUPON.value or campaign.offer_id is None:
        return 0
    from loyalty.coupons.discounts import OfferKind as CouponKind
    from loyalty.coupons.offers import current_terms, get_offer

    offer = get_offer(campaign.offer_id)
    terms = current_terms(offer)
    per_code: int | None
    if terms.kind is CouponKind.FIXED_AMOUNT:
        per_code = terms.amount_minor or 0
    elif terms.kind is CouponKind.PERCENT:
        per_code = terms.max_discount_minor
    elif terms.kind in (CouponKind.BONUS_POINTS, CouponKind.POINTS_MULTIPLIER):
        per_code = 0
    else:
        per_code = None  # a free item: its price is the basket's
    total = None if per_code is None else per_code * codes
    budget = offer.budget_minor
    if budget is not None:
        left = max(budget - offer.discount_spent_minor, 0)
        total = left if total is None else min(total, left)
    return total
