"""Campaign test helpers: an audience with consents, a segment over it, a campaign body,
and the fan-out run the way the `deliver-campaigns` job runs it."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns import delivery, segments
from campaigns.engine_models import CampaignRecipient
from loyalty.batches import BatchCursor
from loyalty.clock import utcnow
from loyalty.db import db
from notifications.consent import ConsentSource, Purpose, record_consent
from notifications.models import Message
from notifications.providers.base import Channel

REGION = "north"
TEMPLATES = {"sms": "campaign_offer", "email": "campaign_offer"}
_phones = itertools.count(1)


def phone() -> str:
    """A new valid German mobile number."""
    return f"+49151{next(_phones):08d}"


def consent(member_id: int, *channels: Channel, granted: bool = True) -> None:
    for channel in channels:
        record_consent(
            member_id, channel, Purpose.MARKETING, granted,
            source=ConsentSource.IMPORT.value, now=utcnow(), actor="test",
        )  # fmt: skip
    db.session.commit()


def segment(name: str = "North", region: str = REGION) -> int:
    created = segments.create_segment(
        {"name": name, "kind": "dynamic", "rule": {"field": "region", "op": "eq", "value": region}},
        now=utcnow(),
        actor="test",
    )
    db.session.commit()
    return created.id


def body(segment_id: int, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Spring offer",
        "segment_id": segment_id,
        "channel_order": ["sms", "email"],
        "content": {"variants": [{"name": "A", "weight": 1, "templates": TEMPLATES}]},
        "holdout_pct": 0,
    }
    data.update(overrides)
    return data


def deliver(now: datetime | None = None, *, size: int = delivery.CHUNK, chunks: int = 10**6) -> int:
    """Start due runs and deliver up to `chunks` chunks (each committed, like the job)."""
    moment = now or utcnow()
    delivery.start_due_runs(moment)
    db.session.commit()
    cursor = BatchCursor()
    handled = 0
    for _ in range(chunks):
        before = cursor.handled
        handled += delivery.deliver_chunk(cursor, moment, size=size)
        db.session.commit()
        if cursor.handled == before:
            break
    return handled


def recipients(campaign_id: int) -> dict[int, CampaignRecipient]:
    db.session.expire_all()
    rows = db.session.scalars(
        sa.select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign_id)
    ).all()
    found = {row.member_id: row for row in rows}
    db.session.rollback()
    return found


def campaign_messages(campaign_id: int) -> list[Message]:
    db.session.expire_all()
    rows = list(
        db.session.scalars(
            sa.select(Message)
            .where(Message.dedupe_key.like(f"campaign:{campaign_id}:%"))
            .order_by(Message.id)
        )
    )
    db.session.rollback()
    return rows


def launched_to(member_ids: list[int], *, holdout_pct: int = 0) -> int:
    """A campaign to exactly these members (a static segment; email consent given), launched
    and fanned out. Returns its id."""
    from campaigns import lifecycle
    from campaigns.models import SegmentMember

    for member_id in member_ids:
        consent(member_id, Channel.EMAIL)
    static = segments.create_segment(
        {"name": "listed", "kind": "static", "rule": None}, now=utcnow(), actor="test"
    )
    db.session.add_all(SegmentMember(segment_id=static.id, member_id=m) for m in member_ids)
    data = body(static.id, holdout_pct=holdout_pct)
    data.update(offer={}, schedule={}, attribution_days=7, description=None)
    campaign = lifecycle.create_campaign(data, now=utcnow(), actor="test")
    db.session.commit()
    lifecycle.launch(campaign.id, now=utcnow(), actor="test")
    db.session.commit()
    deliver()
    return campaign.id
