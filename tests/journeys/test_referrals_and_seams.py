"""Referral abuse checks and caps, and the seams: merges, erasure and exports of journeys,
reservations and referrals."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaigns import journeys, o2o, referrals
from campaigns.journey_models import JourneyEntry, Referral, ReferralMark
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import Conflict
from loyalty.ledger.operations import member_balance
from loyalty.members.merge import merge_members
from loyalty.members.operations import remove_identity
from loyalty.members.privacy import erase_member, export_member
from tests.journeys.helpers import advance, journey


def _first_purchase(referee_id: int, order_id: int) -> Referral | None:
    pending = db.session.scalar(sa.select(Referral).where(Referral.referee_id == referee_id))
    if pending is None:
        return None
    rewarded = referrals.reward(pending.id, order_id=order_id, now=utcnow())
    db.session.commit()
    return rewarded


def test_a_shared_device_fingerprint_is_self_referral(app, make):
    referrer, friend = make.member(), make.member()
    code = referrals.code_for(referrer.id, now=utcnow(), device_fingerprint="dev-1").code
    db.session.commit()
    with pytest.raises(referrals.ReferralRefused, match="same device"):
        referrals.claim(friend.id, code, now=utcnow(), device_fingerprint="dev-1")
    db.session.rollback()
    assert referrals.claim(friend.id, code, now=utcnow(), device_fingerprint="dev-2")
    db.session.commit()
    stored = set(db.session.scalars(sa.select(ReferralMark.digest)))
    assert "dev-1" not in stored and "dev-2" not in stored  # digests only


def test_a_phone_the_referrer_used_is_self_referral_even_after_they_changed_it(app, make):
    referrer = make.member(phone="+33612345678")
    code = referrals.code_for(referrer.id, now=utcnow()).code  # remembers the phone's digest
    remove_identity(referrer.id, "phone", now=utcnow(), actor="t")
    db.session.commit()
    second_account = make.member(phone="+33612345678")
    with pytest.raises(referrals.ReferralRefused, match="same phone"):
        referrals.claim(second_account.id, code, now=utcnow())


def test_only_new_members_claim_and_a_member_claims_once(app, make):
    referrer, other, old = (
        make.member(),
        make.member(),
        make.member(now=utcnow() - timedelta(days=60)),
    )
    code = referrals.code_for(referrer.id, now=utcnow()).code
    other_code = referrals.code_for(other.id, now=utcnow()).code
    db.session.commit()
    with pytest.raises(referrals.ReferralRefused, match="new member"):
        referrals.claim(old.id, code, now=utcnow())
    db.session.rollback()
    friend = make.member()
    first = referrals.claim(friend.id, code, now=utcnow())
    again = referrals.claim(friend.id, code, now=utcnow())
    assert first.id == again.id
    with pytest.raises(referrals.ReferralRefused, match="another code"):
        referrals.claim(friend.id, other_code, now=utcnow())


def test_the_reward_is_once_and_the_referrer_is_capped(app, make, monkeypatch):
    monkeypatch.setattr(referrals, "MAX_REWARDED_PER_REFERRER", 1)
    referrer = make.member()
    code = referrals.code_for(referrer.id, now=utcnow()).code
    friends = [make.member(), make.member()]
    for friend in friends:
        referrals.claim(friend.id, code, now=utcnow())
    db.session.commit()
    first = _first_purchase(friends[0].id, order_id=10**9)
    assert first.status == "rewarded"
    assert referrals.reward(first.id, order_id=10**9, now=utcnow()).status == "rewarded"
    db.session.commit()
    second = _first_purchase(friends[1].id, order_id=10**9 + 1)
    assert (second.status, second.reason) == ("refused", "referrer cap")
    assert member_balance(referrer.id).available == referrals.REFERRER_POINTS  # once
    assert [member_balance(f.id).available for f in friends] == [referrals.REFEREE_POINTS] * 2


def test_a_referee_merged_into_the_referrer_earns_nothing(app, make):
    referrer, friend = make.member(), make.member()
    code = referrals.code_for(referrer.id, now=utcnow()).code
    referrals.claim(friend.id, code, now=utcnow())
    db.session.commit()
    merge_members(referrer.id, friend.id, reason="duplicate", now=utcnow(), actor="t")
    db.session.commit()
    refused = _first_purchase(friend.id, order_id=10**9)
    assert (refused.status, refused.reason) == ("refused", "self-referral: same person")
    assert member_balance(referrer.id).available == 0


def test_merges_move_entries_and_reservations_to_the_survivor(app, make):
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
    flow = journey([{"type": "wait", "days": 1}, {"type": "points", "points": 3}])
    survivor, merged = make.member(), make.member()
    journeys.enter_manually(flow.id, [survivor.id, merged.id], cause="x", now=utcnow())
    for member_id in (survivor.id, merged.id):
        o2o.reserve(event.id, member_id, now=utcnow())
    db.session.commit()
    summary = merge_members(survivor.id, merged.id, reason=None, now=utcnow(), actor="t")
    db.session.commit()
    assert "journey_entries_moved" in str(summary.summary)
    rows = db.session.execute(
        sa.select(JourneyEntry.member_id, JourneyEntry.status).order_by(JourneyEntry.id)
    ).all()
    assert rows == [(survivor.id, "active"), (survivor.id, "exited")]  # one journey, one pass
    db.session.refresh(event)
    assert event.reserved == 1  # the duplicate place given back
    advance(utcnow() + timedelta(days=2))
    assert member_balance(survivor.id).available == 3


def test_erasure_stops_the_journeys_and_forgets_codes_and_marks_exports_show_them(app, make):
    flow = journey([{"type": "wait", "days": 1}, {"type": "points", "points": 3}])
    member = make.member()
    journeys.enter_manually(flow.id, [member.id], cause="x", now=utcnow())
    referrals.code_for(member.id, now=utcnow(), device_fingerprint="d")
    db.session.commit()
    exported = export_member(member.id, now=utcnow())["sections"]["journeys"]
    assert exported["journey_entries"][0]["status"] == "active"
    assert exported["referral_code"]
    erase_member(member.id, now=utcnow(), actor="t")
    db.session.commit()
    assert db.session.scalar(sa.select(JourneyEntry.status)) == "exited"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ReferralMark)) == 0
    assert referrals.existing_code(member.id) is None
    assert advance(utcnow() + timedelta(days=2)) == 0


def test_a_full_event_refuses_and_a_cancelled_place_is_given_back_once(app, make):
    store = make.store("S1")
    event = o2o.create_event(
        {
            "name": "Workshop",
            "store_id": store.id,
            "starts_at": utcnow() + timedelta(days=1),
            "ends_at": utcnow() + timedelta(days=1, hours=2),
            "capacity": 1,
        },
        now=utcnow(),
    )
    first, second = make.member(), make.member()
    o2o.reserve(event.id, first.id, now=utcnow())
    db.session.commit()
    with pytest.raises(Conflict):
        o2o.reserve(event.id, second.id, now=utcnow())
    db.session.rollback()
    o2o.cancel(event.id, first.id, now=utcnow())
    o2o.cancel(event.id, first.id, now=utcnow())
    db.session.commit()
    db.session.refresh(event)
    assert event.reserved == 0


def test_a_merge_keeps_a_held_out_survivor_out_of_the_journey(app, make):
    """The survivor is in the journey's control group: the merged member's pass of the same
    journey exits at the merge, so the person is never messaged."""
    flow = journey([{"type": "wait", "hours": 1}, {"type": "points", "points": 3}], holdout_pct=50)
    people = [make.member().id for _ in range(12)]
    survivor = next(m for m in people if journeys.is_held_out(flow, m))
    merged = next(m for m in people if not journeys.is_held_out(flow, m))
    journeys.enter_manually(flow.id, [survivor, merged], cause="x", now=utcnow())
    db.session.commit()
    merge_members(survivor, merged, reason=None, now=utcnow(), actor="t")
    db.session.commit()
    rows = db.session.execute(
        sa.select(JourneyEntry.member_id, JourneyEntry.status, JourneyEntry.exit_reason).order_by(
            JourneyEntry.id
        )
    ).all()
    assert sorted(rows, key=lambda r: r.status) == [
        (survivor, "exited", "merged"),
        (survivor, "held_out", None),
    ]
    advance(utcnow() + timedelta(hours=2))
    assert member_balance(survivor).available == 0
