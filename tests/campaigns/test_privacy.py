"""Erasure deletes the person's targeting rows and static segment memberships; the export
shows them."""

from __future__ import annotations

import sqlalchemy as sa

from campaigns import profiles, segments
from campaigns.models import MemberProfile, MemberTag, SegmentMember
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.members.privacy import erase_member, export_member


def test_export_shows_and_erasure_removes_profiles_tags_and_static_memberships(app, make):
    member = make.member(region="north", attributes={"tags": ["vip"]})
    other = make.member(region="north")
    profiles.refresh_people([member.id, other.id], utcnow())
    segment = segments.create_segment(
        {
            "name": "north",
            "kind": "static",
            "rule": {"field": "region", "op": "eq", "value": "north"},
        },
        now=utcnow(),
        actor="test",
    )
    db.session.commit()

    exported = export_member(member.id, now=utcnow())["sections"]["targeting"]
    assert exported["tags"] == ["vip"]
    assert exported["profile"]["person_id"] == member.id
    assert exported["static_segments"] == [{"id": segment.id, "name": "north"}]

    summary = erase_member(member.id, now=utcnow(), actor="test")
    db.session.commit()
    assert summary["campaigns"]["segment_memberships_deleted"] == 1
    assert summary["campaigns"]["profiles_deleted"] == 1
    for column in (MemberProfile.person_id, MemberTag.person_id):
        assert db.session.scalar(sa.select(sa.func.count()).where(column == member.id)) == 0
    memberships = db.session.scalars(
        sa.select(SegmentMember.member_id).where(SegmentMember.segment_id == segment.id)
    )
    assert list(memberships) == [other.id]
    # The consumer never writes an erased member's rows again.
    profiles.refresh_people([member.id], utcnow())
    assert db.session.get(MemberProfile, member.id) is None
