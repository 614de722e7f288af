"""Read paths of the notifications API: message history pages, recorded messages."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from loyalty.db import db
from loyalty.errors import NotFound
from loyalty.members.resolution import current_member_id, history_member_ids
from loyalty.pagination import int_cursor
from notifications.models import Message, MessageTransition, RecordedMessage


def message_page(
    member_id: int,
    *,
    cursor: str | None,
    limit: int,
    state: str | None = None,
    channel: str | None = None,
) -> dict[str, Any]:
    """The person's messages, newest first (ids merged into them included), one page.
    Index: (member_id, id)."""
    ids = history_member_ids(current_member_id(member_id))
    query = sa.select(Message).where(Message.member_id.in_(ids))
    before = int_cursor(cursor)
    if before is not None:
        query = query.where(Message.id < before)
    if state is not None:
        query = query.where(Message.state == state)
    if channel is not None:
        query = query.where(Message.channel == channel)
    rows = list(db.session.scalars(query.order_by(Message.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": rows, "next_cursor": str(rows[-1].id) if more else None}


def message_detail(message_id: int) -> dict[str, Any]:
    message = db.session.get(Message, message_id)
    if message is None:
        raise NotFound(f"no message {message_id}")
    transitions = list(
        db.session.scalars(
            sa.select(MessageTransition)
            .where(MessageTransition.message_id == message_id)
            .order_by(MessageTransition.id)
        )
    )
    return {
        **{c.key: getattr(message, c.key) for c in Message.__table__.c},
        "transitions": transitions,
    }


def recorded_page(*, cursor: str | None, limit: int) -> dict[str, Any]:
    """What the recording provider 'sent', newest first."""
    query = sa.select(RecordedMessage)
    before = int_cursor(cursor)
    if before is not None:
        query = query.where(RecordedMessage.id < before)
    rows = list(db.session.scalars(query.order_by(RecordedMessage.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": rows, "next_cursor": str(rows[-1].id) if more else None}
