"""What a campaign's fan-out asks of notifications for a whole chunk of people (it queues
their messages with `pipeline.create_messages`; contacts and text are read at send time,
when the send-time policies run too: consent again, quiet hours, frequency caps).

    reachable(person_ids, now)           per person, the channels a destination exists for
    marketing_consents(person_ids)       per person, the channels marketing is granted on
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from loyalty.db import any_of
from loyalty.db import db as database
from loyalty.members.models import IdentityKind, MemberIdentity
from notifications.consent import MemberConsent, Purpose
from notifications.providers.base import Channel


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
