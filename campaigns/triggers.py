"""What starts a journey: outbox events (enrolment, first purchase, tier change, points
expiring) and scheduled scans (birthdays in the member's timezone, no purchase for N days,
a segment's audience at activation).

Each cause has a key unique per journey (`event:<id>`, `birthday:<year>:<person>`,
`lapsed:<person>:<last order time>`, `segment:<person>`), so a redelivered event or a scan
that runs twice enters nobody twice; the journey's re-entry rule decides the rest.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from campaigns.journey_models import Journey
from campaigns.journeys import enter, enter_many
from loyalty import outbox
from loyalty.batches import CHUNK_MEMBERS, BatchCursor
from loyalty.db import constant, db, month_day
from loyalty.errors import NotFound
from loyalty.members.models import Member, MemberStatus
from loyalty.members.resolution import history_member_ids, lock_current_member

EVENT_TRIGGERS = {
    "member.enrolled": "member.enrolled",
    "tier.changed": "tier.changed",
    "points.expiring": "points.expiring",
    "order.posted": "first_purchase",
}


def active_journeys(trigger: str) -> list[Journey]:
    """The active journeys a trigger starts (ix_journeys_trigger)."""
    return list(
        db.session.scalars(
            sa.select(Journey)
            .where(Journey.trigger == trigger, Journey.status == constant("active"))
            .order_by(Journey.id)
        )
    )


def _is_first_purchase(person_ids: list[int], order_id: int | None) -> bool:
    from loyalty.earning.models import Order

    first = db.session.scalar(
        sa.select(Order.id).where(Order.member_id.in_(person_ids)).order_by(Order.id).limit(1)
    )
    return first is not None and first == order_id


@outbox.consumer(*EVENT_TRIGGERS, name="campaigns.journeys")
def on_event(event: outbox.Event) -> None:
    """Enter the event's member into every active journey its trigger starts."""
    trigger = EVENT_TRIGGERS[event.topic]
    if event.member_id is None:
        return
    journeys = active_journeys(trigger)
    if not journeys:
        return
    try:
        member = lock_current_member(event.member_id)
    except NotFound:
        return
    if member.status != MemberStatus.ACTIVE.value:
        return
    if trigger == "first_purchase" and not _is_first_purchase(
        history_member_ids(member.id), (event.payload or {}).get("order_id")
    ):
        return
    for journey in journeys:
        enter(journey, member.id, cause_key=f"event:{event.id}", now=event.occurred_at, locked=True)


# --- scans ---


def _birthday_this_year(birthday: date, year: int) -> date:
    try:
        return birthday.replace(year=year)
    except ValueError:  # 29 February in a common year: the 28th
        return date(year, 2, 28)


def birthdays_chunk(cursor: BatchCursor, now: datetime, *, limit: int = CHUNK_MEMBERS) -> int:
    """Members (id order from the cursor) whose birthday it is today in their own timezone
    enter every active `birthday` journey, once a year. Returns the entries made."""
    journeys = active_journeys("birthday")
    if not journeys:
        return 0
    # Today is one of these three UTC days somewhere: read only those birthdays, a few
    # ranges of ix_members_birthday_day (MMDD), in id order from the cursor.
    days = {
        (d.month, d.day)
        for d in (now.date() - timedelta(days=1), now.date(), now.date() + timedelta(days=1))
    }
    days |= {(2, 29)} if (2, 28) in days else set()
    rows = db.session.execute(
        sa.select(Member.id, Member.birthday, Member.timezone)
        .where(
            month_day(Member.birthday).in_(
                # literals (dates of the clock, never input): a generic plan sees them too
                [sa.literal(month * 100 + day, literal_execute=True) for month, day in sorted(days)]
            ),
            Member.birthday.is_not(None),
            Member.id > cursor.after_id,
            Member.status == constant(MemberStatus.ACTIVE.value),
        )
        .order_by(Member.id)
        .limit(sa.literal(limit, literal_execute=True))
    ).all()
    if not rows:
        return 0
    cursor.handled += len(rows)
    cursor.after_id = rows[-1].id
    entered = 0
    for member_id, birthday, timezone in rows:
        if (birthday.month, birthday.day) not in days:
            continue
        local = now.astimezone(ZoneInfo(timezone or "UTC")).date()
        if _birthday_this_year(birthday, local.year) != local:
            continue
        lock_current_member(member_id)
        for journey in journeys:
            key = f"birthday:{local.year}:{member_id}"
            entered += enter(journey, member_id, cause_key=key, now=now, locked=True) is not None
    return entered


def lapsed_chunk(cursor: BatchCursor, now: datetime, *, limit: int = CHUNK_MEMBERS) -> int:
    """People whose last purchase is N days old (N per journey; within the last 2 days of
    lapsing, a range of ix_member_profiles_last_order) enter `no_purchase` journeys, once per
    lapse (the key holds the last order's time)."""
    from campaigns.models import MemberProfile

    entered = found = 0
    due: list[tuple[int, int, Journey, str]] = []
    full_pages: list[int] = []  # the last person of each journey that filled its page
    last_seen = cursor.after_id
    for journey in active_journeys("no_purchase"):
        days = journey.trigger_days or 0
        rows = db.session.execute(
            sa.select(MemberProfile.person_id, MemberProfile.last_order_at)
            .where(
                MemberProfile.last_order_at <= now - timedelta(days=days),
                MemberProfile.last_order_at > now - timedelta(days=days + 2),
                MemberProfile.person_id > cursor.after_id,
            )
            .order_by(MemberProfile.person_id)
            .limit(limit)
        ).all()
        for person_id, last_order_at in rows:
            found += 1
            due.append(
                (person_id, journey.id, journey, f"lapsed:{person_id}:{last_order_at.isoformat()}")
            )
        if rows:
            last_seen = max(last_seen, rows[-1].person_id)
            if len(rows) == limit:
                full_pages.append(rows[-1].person_id)
    for person_id, _, journey, key in sorted(due, key=lambda item: item[:2]):  # lock order
        entered += enter(journey, person_id, cause_key=key, now=now) is not None
    cursor.handled += found
    # Go on after the smallest full page's last person (the others re-enter nobody twice).
    cursor.after_id = min(full_pages) if full_pages else last_seen
    return entered


def segment_audience_chunk(
    journey_id: int, cursor: BatchCursor, now: datetime, *, limit: int = CHUNK_MEMBERS
) -> int:
    """Enter the next `limit` people of the journey's segment (id order from the cursor),
    all at once (`enter_many`: a fixed number of statements per chunk)."""
    from campaigns import segments

    journey = db.session.get(Journey, journey_id)
    if journey is None or journey.status != "active" or journey.segment_id is None:
        return 0
    segment = segments.get_segment(journey.segment_id)
    audience = segments.audience(segment, now).subquery()
    ids = list(
        db.session.scalars(
            sa.select(audience.c.member_id)
            .where(audience.c.member_id > cursor.after_id)
            .order_by(audience.c.member_id)
            .limit(limit)
        )
    )
    if not ids:
        return 0
    cursor.handled += len(ids)
    cursor.after_id = ids[-1]
    return len(enter_many(journey, ids, cause="segment", now=now))
