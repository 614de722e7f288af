"""A merge folds the newer domains too: consents, push subscriptions, message history,
frequency caps, campaign profiles and static segments all answer for one person."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from campaigns import profiles, segments
from campaigns.models import MemberProfile, SegmentMember
from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.members.merge import merge_members
from loyalty.members.privacy import export_member
from notifications import consent, push
from notifications.consent import ConsentChange, MemberConsent, Purpose
from notifications.policies import FrequencyCap
from notifications.providers.base import Channel
from tests.notifications.factories import queue, reload, send_round
from tests.notifications.test_push_subscriptions import AUTH, P256DH

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=utcnow().tzinfo)


def merge(survivor_id: int, merged_id: int) -> dict:
    audit = merge_members(survivor_id, merged_id, reason=None, now=utcnow(), actor="support:1")
    db.session.commit()
    return audit.summary


def choose(member_id: int, channel: Channel, purpose: Purpose, granted: bool, at: datetime):
    consent.record_consent(member_id, channel, purpose, granted, source="store", now=at,
                           actor="test", place=f"at {at:%H:%M}")  # fmt: skip
    db.session.commit()


def current(member_id: int) -> dict[tuple[str, str], bool]:
    table = MemberConsent.__table__
    rows = db.session.execute(sa.select(table).where(table.c.member_id == member_id)).all()
    return {(r.channel, r.purpose): r.granted for r in rows}


def test_consents_fold_per_channel_and_purpose_latest_choice_wins_opt_out_on_a_tie(make):
    survivor, merged = make.member(), make.member()
    # SMS marketing: the merged member's later opt-in wins over the survivor's opt-out.
    choose(survivor.id, Channel.SMS, Purpose.MARKETING, False, T0)
    choose(merged.id, Channel.SMS, Purpose.MARKETING, True, T0 + timedelta(hours=1))
    # Email marketing: the survivor's later opt-out wins.
    choose(merged.id, Channel.EMAIL, Purpose.MARKETING, True, T0)
    choose(survivor.id, Channel.EMAIL, Purpose.MARKETING, False, T0 + timedelta(hours=1))
    # Push marketing at the same instant: the opt-out wins, whoever made it.
    choose(survivor.id, Channel.PUSH, Purpose.MARKETING, True, T0)
    choose(merged.id, Channel.PUSH, Purpose.MARKETING, False, T0)
    # SMS transactional turned off only by the merged member: it comes along.
    choose(merged.id, Channel.SMS, Purpose.TRANSACTIONAL, False, T0)

    summary = merge(survivor.id, merged.id)

    assert current(survivor.id) == {
        ("sms", "marketing"): True,
        ("email", "marketing"): False,
        ("push", "marketing"): False,
        ("sms", "transactional"): False,
    }
    assert current(merged.id) == {}
    assert consent.allows(merged.id, Channel.SMS, Purpose.MARKETING)
    assert not consent.allows(survivor.id, Channel.SMS, Purpose.TRANSACTIONAL)
    assert summary["notifications.consent.merge_consents"]["consents_folded"] == 4
    # Both histories stay, and each folded choice is recorded as a merge entry.
    history = consent.history(survivor.id)
    assert len([c for c in history if c.source != "merge"]) == 7
    merges = [(c.channel, c.purpose, c.granted, c.place) for c in history if c.source == "merge"]
    assert sorted(merges) == [
        ("email", "marketing", False, f"member {survivor.id}"),
        ("push", "marketing", False, f"member {merged.id}"),
        ("sms", "marketing", True, f"member {merged.id}"),
        ("sms", "transactional", False, f"member {merged.id}"),
    ]
    assert {c.member_id for c in history if c.source == "merge"} == {survivor.id}
    # The choice kept keeps its own time and place (it was made then, not at the merge).
    row = db.session.get(MemberConsent, (survivor.id, "sms", "marketing"))
    assert row.place == "at 13:00" and row.updated_at == T0 + timedelta(hours=1)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentChange)) == 11


def test_push_subscriptions_move_to_the_survivor(make):
    survivor, merged = make.member(), make.member()
    for member, name in ((survivor, "a"), (merged, "b"), (merged, "c")):
        push.register_subscription(
            member.id, endpoint=f"https://push.example.com/{name}", p256dh=P256DH, auth=AUTH,
            expires_at=None, now=utcnow(),
        )  # fmt: skip
    db.session.commit()
    summary = merge(survivor.id, merged.id)
    assert summary["notifications.push.merge_subscriptions"] == {"push_subscriptions": 2}
    owners = db.session.scalars(sa.select(push.PushSubscription.member_id)).all()
    assert owners == [survivor.id] * 3
    # The newest device of the person is the push destination.
    assert "push.example.com/c" in push.newest_subscription(survivor.id)


def test_message_history_of_both_ids_reads_under_the_person(client, make):
    survivor = make.member(phone="+4915112345601")
    merged = make.member(phone="+4915112345602")
    before = queue(merged.id)
    mine = queue(survivor.id)
    send_round()
    merge(survivor.id, merged.id)
    after = queue(merged.id)  # written under the old id (a cause that raced the merge)

    ids = [before.id, mine.id, after.id]
    for headers, url in (
        (make.member_token(merged.id), "/v1/me/messages"),
        (make.member_token(survivor.id), "/v1/me/messages"),
        (make.api_key(scopes.ADMIN), f"/v1/members/{merged.id}/messages"),
        (make.api_key(scopes.ADMIN), f"/v1/members/{survivor.id}/messages"),
    ):
        answer = client.get(url, headers=headers)
        assert answer.status_code == 200, answer.json
        assert sorted(item["id"] for item in answer.json["items"]) == ids
    exported = export_member(merged.id, now=utcnow())["sections"]["notifications"]
    assert sorted(m["id"] for m in exported["messages"]) == ids


def test_the_marketing_cap_counts_the_merged_members_earlier_sends(make):
    survivor = make.member(phone="+4915112345611")
    merged = make.member(phone="+4915112345612")
    start = utcnow()
    for member in (survivor, merged):
        choose(member.id, Channel.SMS, Purpose.MARKETING, True, start - timedelta(days=1))
    cap = FrequencyCap.parse("2/7d")
    first = [queue(merged.id, purpose=Purpose.MARKETING, now=start) for _ in range(2)]
    send_round(now=start, notify_marketing_cap=cap)
    assert [reload(m.id).state for m in first] == ["sent", "sent"]
    merge(survivor.id, merged.id)
    third = queue(survivor.id, purpose=Purpose.MARKETING, now=start + timedelta(hours=1))
    send_round(now=start + timedelta(hours=1), notify_marketing_cap=cap)
    assert reload(third.id).state == "suppressed"
    assert reload(third.id).reason.startswith("frequency cap: 2 marketing messages")


def test_campaign_profiles_are_rebuilt_and_static_memberships_repointed(make):
    survivor = make.member(region="north", attributes={"tags": ["vip"]})
    merged = make.member(region="north", attributes={"tags": ["new"]}, points=40)
    other = make.member(region="north")
    profiles.refresh_people([survivor.id, merged.id, other.id], utcnow())
    both = segments.create_segment(
        {"name": "north", "kind": "static", "rule": {"field": "region", "op": "eq",
                                                     "value": "north"}},
        now=utcnow(), actor="test",
    )  # fmt: skip
    db.session.flush()
    only_merged = segments.create_segment(
        {"name": "new", "kind": "static", "rule": {"field": "tags", "op": "contains_any",
                                                   "value": ["new"]}},
        now=utcnow(), actor="test",
    )  # fmt: skip
    db.session.commit()

    merge(survivor.id, merged.id)

    assert db.session.get(MemberProfile, merged.id) is None
    profile = db.session.get(MemberProfile, survivor.id)
    assert profile is not None and profile.points_balance == 40
    assert profiles_tags(survivor.id) == ["new", "vip"]

    def listed(segment_id: int) -> list[int]:
        return sorted(
            db.session.scalars(
                sa.select(SegmentMember.member_id).where(SegmentMember.segment_id == segment_id)
            )
        )

    assert listed(both.id) == sorted([survivor.id, other.id])
    assert listed(only_merged.id) == [survivor.id]


def profiles_tags(person_id: int) -> list[str]:
    from campaigns.models import MemberTag

    return sorted(
        db.session.scalars(sa.select(MemberTag.tag).where(MemberTag.person_id == person_id))
    )
