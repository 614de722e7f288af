"""Notifications in the privacy export, and what erasure does to them.

- `messages`: destination, rendered subject/body/html and variables are blanked; queued
  ones are suppressed; state, times and template are kept.
- `message_transitions`: no personal data (states, reasons); kept.
- `recorded_messages` (the recording provider): destination and text blanked.
- `member_consents`: deleted (nothing is sent to an erased member).
- `consent_changes`: channel, purpose, source, actor id and time, no personal data; kept as
  the evidence of consent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty.db import constant, db
from loyalty.members.merge import register_merge_step
from loyalty.members.privacy import register_erase_step, register_export_section
from loyalty.members.resolution import history_member_ids
from notifications.consent import ConsentChange, MemberConsent, merge_consents
from notifications.models import (
    DUE_STATES,
    Message,
    MessageState,
    MessageTransition,
    RecordedMessage,
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


MESSAGE_FIELDS = (
    "id", "member_id", "channel", "template", "template_version", "locale", "purpose",
    "state", "reason", "destination", "subject", "body", "sms_segments", "provider",
    "attempts",
)  # fmt: skip


def export_notifications(member_id: int) -> dict[str, Any]:
    ids = history_member_ids(member_id)
    messages = [
        {
            **{name: getattr(m, name) for name in MESSAGE_FIELDS},
            "created_at": _iso(m.created_at),
            "sent_at": _iso(m.sent_at),
            "delivered_at": _iso(m.delivered_at),
            "failed_at": _iso(m.failed_at),
        }
        for m in db.session.scalars(
            sa.select(Message).where(Message.member_id.in_(ids)).order_by(Message.id)
        )
    ]
    consents = [
        {
            "channel": c.channel,
            "purpose": c.purpose,
            "granted": c.granted,
            "source": c.source,
            "place": c.place,
            "updated_at": _iso(c.updated_at),
        }
        for c in db.session.scalars(
            sa.select(MemberConsent).where(MemberConsent.member_id.in_(ids))
        )
    ]
    changes = [
        {
            "channel": c.channel,
            "purpose": c.purpose,
            "granted": c.granted,
            "source": c.source,
            "actor": c.actor,
            "place": c.place,
            "at": _iso(c.at),
            "text_id": c.text_id,  # the consent text agreed to (GET /v1/consent-texts)
        }
        for c in db.session.scalars(
            sa.select(ConsentChange)
            .where(ConsentChange.member_id.in_(ids))
            .order_by(ConsentChange.id)
        )
    ]
    return {"messages": messages, "consents": consents, "consent_history": changes}


def erase_notifications(member_id: int, now: datetime) -> dict[str, Any]:
    ids = history_member_ids(member_id)
    table = Message.__table__
    mine = table.c.member_id.in_(ids)
    pending = [
        row[0]
        for row in db.session.execute(
            sa.select(table.c.id).where(mine, table.c.state.in_([constant(s) for s in DUE_STATES]))
        )
    ]
    for message_id in pending:
        db.session.execute(
            sa.update(table)
            .where(table.c.id == message_id)
            .values(state=MessageState.SUPPRESSED.value, reason="member erased", updated_at=now)
        )
        db.session.execute(
            sa.insert(MessageTransition.__table__).values(
                message_id=message_id, to_state="suppressed", reason="member erased", at=now
            )
        )
    blanked = db.session.execute(
        sa.update(table)
        .where(mine)
        .values(
            destination=None,
            destination_override=None,
            subject=None,
            body=None,
            html=None,
            variables={},
            updated_at=now,
        )
    ).rowcount
    recorded = RecordedMessage.__table__
    db.session.execute(
        sa.update(recorded)
        .where(recorded.c.message_id.in_(sa.select(table.c.id).where(mine)))
        .values(destination=None, subject=None, body=None, html=None)
    )
    consents = db.session.execute(
        sa.delete(MemberConsent.__table__).where(MemberConsent.__table__.c.member_id.in_(ids))
    ).rowcount
    return {
        "messages_blanked": blanked,
        "queued_messages_suppressed": len(pending),
        "consents_removed": consents,
        "consent_history": "kept (evidence of consent; holds no personal data)",
    }


register_export_section("notifications", export_notifications)
register_erase_step("notifications", erase_notifications)
# Messages stay under the id they were sent to: history pages, the frequency cap and the
# export read the person's ids (the merge rule); consents fold into the survivor's.
register_merge_step(merge_consents)
