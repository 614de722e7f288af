"""Messages by the thousand: what a campaign's fan-out needs from notifications.

    queue_messages(rows, now)            one multi-row INSERT ... ON CONFLICT (dedupe_key)
                                         DO NOTHING RETURNING, plus one for the transitions
    reachable(person_ids, now)           per person, the channels a destination exists for
    marketing_consents(person_ids)       per person, the channels marketing is granted on

Same rules as `pipeline.queue_message`: the caller's transaction, at most one message per
dedupe key, ids and amounts in the variables (contacts and text are read at send time, when
the send-time policies run too: consent again, quiet hours, frequency caps).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty.db import any_of, upsert_insert
from loyalty.db import db as database
from loyalty.members.models import IdentityKind, MemberIdentity
from notifications.consent import MemberConsent, Purpose
from notifications.models import Message, MessageState, MessageTransition
from notifications.pipeline import MAX_DEDUPE_KEY
from notifications.providers.base import Channel


@dataclass(frozen=True)
class NewMessage:
    member_id: int
    channel: Channel
    template: str
    dedupe_key: str
    purpose: Purpose = Purpose.MARKETING
    variables: Mapping[str, Any] = field(default_factory=dict)


def queue_messages(rows: Sequence[NewMessage], now: datetime) -> dict[str, int]:
    """Queue many messages at once; returns dedupe key -> id of the messages inserted
    (a key that already had a message is absent: its cause produced it before)."""
    if not rows:
        return {}
    for row in rows:
        if not 1 <= len(row.dedupe_key) <= MAX_DEDUPE_KEY:
            raise ValueError(f"a dedupe key has 1-{MAX_DEDUPE_KEY} characters")
    table = Message.__table__
    values = [
        {
            "member_id": row.member_id,
            "channel": Channel(row.channel).value,
            "template": row.template,
            "purpose": Purpose(row.purpose).value,
            "dedupe_key": row.dedupe_key,
            "variables": dict(row.variables),
            "destination_override": None,
            "state": MessageState.QUEUED.value,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for row in rows
    ]
    # One statement executed for many rows (compiled once and cached), not `.values(rows)`,
    # which compiles a new statement with a bind parameter per value for every chunk.
    inserted = database.session.execute(
        upsert_insert(table)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(table.c.id, table.c.dedupe_key),
        values,
    ).all()
    if inserted:
        database.session.execute(
            sa.insert(MessageTransition.__table__),
            [
                {"message_id": mid, "to_state": "queued", "reason": "queued", "at": now}
                for mid, _ in inserted
            ],
        )
    return {key: mid for mid, key in inserted}


def reachable(person_ids: Iterable[int], now: datetime) -> dict[int, set[Channel]]:
    """Per person, the channels a destination is on file for now: a phone (SMS), an email,
    an unexpired push subscription. Two reads for the whole chunk."""
    from notifications.push import PushSubscription

    ids = list(person_ids)
    found: dict[int, set[Channel]] = defaultdict(set)
    if not ids:
        return found
    kinds = {IdentityKind.PHONE.value: Channel.SMS, IdentityKind.EMAIL.value: Channel.EMAIL}
    for member_id, kind in database.session.execute(
        sa.select(MemberIdentity.member_id, MemberIdentity.kind).where(
            any_of(MemberIdentity.member_id, ids), MemberIdentity.kind.in_(list(kinds))
        )
    ):
        found[member_id].add(kinds[kind])
    for (member_id,) in database.session.execute(
        sa.select(PushSubscription.member_id)
        .where(
            any_of(PushSubscription.member_id, ids),
            sa.or_(PushSubscription.expires_at.is_(None), PushSubscription.expires_at > now),
        )
        .distinct()
    ):
        found[member_id].add(Channel.PUSH)
    return found


def marketing_consents(person_ids: Iterable[int]) -> dict[int, set[Channel]]:
    """Per person, the channels with a recorded marketing opt-in (marketing is opt-in:
    no row, no consent). One read for the whole chunk."""
    ids = list(person_ids)
    granted: dict[int, set[Channel]] = defaultdict(set)
    if not ids:
        return granted
    table = MemberConsent.__table__
    for member_id, channel in database.session.execute(
        sa.select(table.c.member_id, table.c.channel).where(
            any_of(table.c.member_id, ids),
            table.c.purpose == Purpose.MARKETING.value,
            table.c.granted.is_(True),
        )
    ):
        granted[member_id].add(Channel(channel))
    return granted
