"""A chunk of messages is rendered from what the send job read once for the whole chunk:
its coupons, offers, tiers and people. Sending more messages costs no more statements,
and each marketing message links to its own person's unsubscribe page, merges followed."""

from __future__ import annotations

from urllib.parse import urlsplit

import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.coupons.models import CouponCode
from loyalty.db import db
from loyalty.members.merge import merge_members
from loyalty.members.models import MemberIdentity
from notifications import consent, unsubscribe
from notifications.consent import Purpose
from notifications.providers.base import Channel
from tests.coupons.factories import codes, offer
from tests.notifications.factories import ScriptedProvider, providers_with, queue, send_round
from tests.statements import statements


def _coupon_messages(make, count: int) -> list[tuple[int, str]]:
    """`count` members with SMS marketing consent, each queued a campaign_offer with a
    code of its own; returns (member id, code)."""
    launch = offer(name="Launch day")
    issued = codes(launch.id, count)
    sent = []
    for code in issued:
        member = make.member(phone=f"+4915{len(sent):09d}{count:02d}")
        consent.record_consent(member.id, Channel.SMS, Purpose.MARKETING, True,
                               source="app", now=utcnow(), actor="test")  # fmt: skip
        coupon_id = db.session.scalar(sa.select(CouponCode.id).where(CouponCode.code == code))
        queue(member.id, template="campaign_offer", purpose=Purpose.MARKETING,
              variables={"coupon_id": coupon_id})  # fmt: skip
        sent.append((member.id, code))
    return sent


def _statements_to_send(make, count: int) -> int:
    _coupon_messages(make, count)
    db.session.expire_all()
    with statements() as seen:
        stats = send_round()
    assert stats.sent == count
    return len(seen)


def test_a_bigger_chunk_costs_no_more_statements(make):
    assert _statements_to_send(make, 3) == _statements_to_send(make, 12)


def test_each_message_shows_its_own_code_and_the_offer(make):
    sent = _coupon_messages(make, 4)
    provider = ScriptedProvider(Channel.SMS)
    send_round(providers=providers_with(provider))
    texts = {message.to: message.text for message in provider.calls}
    phones = {
        member_id: phone
        for member_id, phone in db.session.execute(
            sa.select(MemberIdentity.member_id, MemberIdentity.value).where(
                MemberIdentity.member_id.in_([member_id for member_id, _ in sent])
            )
        )
    }
    for member_id, code in sent:
        assert texts[phones[member_id]].startswith(f"Launch day: code {code}.")


def test_a_message_queued_before_a_merge_links_to_the_survivors_unsubscribe(make):
    survivor = make.member(phone="+4915199990001")
    [(merged, _code)] = _coupon_messages(make, 1)
    merge_members(survivor.id, merged, reason=None, now=utcnow(), actor="support:1")
    db.session.commit()
    provider = ScriptedProvider(Channel.SMS)
    send_round(providers=providers_with(provider))
    [outgoing] = provider.calls
    token = urlsplit(outgoing.unsubscribe_url).path.rsplit("/", 1)[-1]
    assert unsubscribe.read_token(token) == (survivor.id, Channel.SMS)
