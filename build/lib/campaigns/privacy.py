"""The targeting layer in exports and erasure.

Profile rows, category purchases and tags are derived from data other domains keep (and
scrub): erasure deletes them outright, and the profile consumer never writes them again for
an erased member. Static segment memberships name the person: deleted too, so an erased
member leaves every uploaded list and snapshot.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.models import (
    MemberCategoryPurchase,
    MemberProfile,
    MemberTag,
    Segment,
    SegmentMember,
)
from loyalty.db import db


def _ids(member_id: int) -> list[int]:
    from loyalty.members.privacy import same_person_ids

    return same_person_ids(member_id)


def erase_member_targeting(member_id: int, now: datetime) -> dict[str, Any]:
    ids = _ids(member_id)
    summary: dict[str, Any] = {}
    for name, model in (
        ("profiles_deleted", MemberProfile),
        ("category_rows_deleted", MemberCategoryPurchase),
        ("tags_deleted", MemberTag),
    ):
        table = model.__table__
        result = db.session.execute(sa.delete(table).where(table.c.person_id.in_(ids)))
        summary[name] = result.rowcount or 0
    memberships = SegmentMember.__table__
    result = db.session.execute(sa.delete(memberships).where(memberships.c.member_id.in_(ids)))
    summary["segment_memberships_deleted"] = result.rowcount or 0
    return summary


def export_member_targeting(member_id: int) -> dict[str, Any]:
    ids = _ids(member_id)
    profile = db.session.get(MemberProfile, ids[0])
    columns = [c.name for c in MemberProfile.__table__.columns]
    categories = db.session.scalars(
        sa.select(MemberCategoryPurchase)
        .where(MemberCategoryPurchase.person_id.in_(ids))
        .order_by(MemberCategoryPurchase.category, MemberCategoryPurchase.channel)
    )
    tags = db.session.scalars(
        sa.select(MemberTag.tag).where(MemberTag.person_id.in_(ids)).order_by(MemberTag.tag)
    )
    static = db.session.execute(
        sa.select(Segment.id, Segment.name)
        .join(SegmentMember, SegmentMember.segment_id == Segment.id)
        .where(SegmentMember.member_id.in_(ids))
        .distinct()
        .order_by(Segment.id)
    ).all()
    return {
        "profile": {name: _json(getattr(profile, name)) for name in columns} if profile else None,
        "categories": [
            {
                "category": row.category,
                "channel": row.channel,
                "first_at": row.first_at.isoformat(),
                "last_at": row.last_at.isoformat(),
            }
            for row in categories
        ],
        "tags": list(tags),
        "static_segments": [{"id": row.id, "name": row.name} for row in static],
    }


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
