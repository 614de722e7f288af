"""Send-time policies, shared by the notification pipeline and campaigns.

    verdict = policies.evaluate(member_id=..., channel=Channel.SMS, purpose=Purpose.MARKETING,
                                now=now, policy=policies.from_settings(settings))
    verdict.action  # "send" | "defer" (until verdict.until) | "suppress"; verdict.reason

Checked when a message is about to be sent (not when it is queued), so a consent revoked
or a quiet hour begun in between is honoured:

1. consent (`notifications.consent.allows`): no marketing without an opt-in; transactional
   messages unless the member turned them off for the channel -> suppress;
2. quiet hours in the member's timezone -> defer to the end of the quiet hours (never
   dropped). They apply to marketing on every channel and to transactional SMS and push
   (they wake people up); transactional email and urgent messages (login codes, test
   sends) go at any hour;
3. the marketing frequency cap: at most N marketing messages per member in a rolling
   window, counting those sent or being sent -> suppress.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from loyalty.db import any_of, db
from loyalty.members.models import Member, MemberStatus
from loyalty.members.resolution import current_member_id, history_member_ids, person_of
from notifications.consent import MemberConsent, Purpose, allows
from notifications.consent import _default as consent_default
from notifications.models import Message
from notifications.providers.base import Channel

Action = Literal["send", "defer", "suppress"]


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str | None = None
    until: datetime | None = None  # for "defer"

    @classmethod
    def send(cls) -> Verdict:
        return cls("send")


@dataclass(frozen=True)
class QuietHours:
    """A nightly window in local time, e.g. 21:00-08:00 (may cross midnight)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
        if not match:
            raise ValueError(f"quiet hours must look like 21:00-08:00, got {text!r}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
            raise ValueError(f"quiet hours must be two different times of day, got {text!r}")
        return cls(time(h1, m1), time(h2, m2))

    def ends_after(self, now: datetime, timezone: str) -> datetime | None:
        """The UTC time the current quiet period ends, or None when `now` isn't quiet."""
        local = now.astimezone(_zone(timezone))
        clock = local.time().replace(tzinfo=None)
        crosses_midnight = self.start > self.end
        if crosses_midnight:
            quiet = clock >= self.start or clock < self.end
        else:
            quiet = self.start <= clock < self.end
        if not quiet:
            return None
        end_day = local.date()
        if crosses_midnight and clock >= self.start:
            end_day += timedelta(days=1)
        end = datetime.combine(end_day, self.end, tzinfo=local.tzinfo)
        # combine() with a zoneinfo handles DST: a wall time in a gap lands after it.
        return end.astimezone(UTC)


@dataclass(frozen=True)
class FrequencyCap:
    """At most `limit` marketing messages per member in any rolling `window`."""

    limit: int
    window: timedelta

    @classmethod
    def parse(cls, text: str) -> FrequencyCap:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*([hd])\s*", text)
        if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
            raise ValueError(f"a frequency cap looks like 3/7d or 1/24h, got {text!r}")
        unit = timedelta(hours=1) if match.group(3) == "h" else timedelta(days=1)
        return cls(int(match.group(1)), unit * int(match.group(2)))


@dataclass(frozen=True)
class Policy:
    quiet_hours: QuietHours | None = None
    marketing_cap: FrequencyCap | None = None


def from_settings(settings: object) -> Policy:
    return Policy(
        quiet_hours=getattr(settings, "notify_quiet_hours", None),
        marketing_cap=getattr(settings, "notify_marketing_cap", None),
    )


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_hours_apply(channel: Channel, purpose: Purpose, *, urgent: bool) -> bool:
    if urgent:
        return False
    return purpose is Purpose.MARKETING or channel in (Channel.SMS, Channel.PUSH)


def marketing_sent_count(member_id: int, since: datetime) -> int:
    """Marketing messages sent (or being sent) to the person since `since`, any channel."""
    ids = history_member_ids(current_member_id(member_id))
    return (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Message)
            .where(
                any_of(Message.member_id, ids),
                Message.purpose == Purpose.MARKETING.value,
                # being sent counts too: two messages of one chunk can't both slip under
                sa.or_(
                    Message.sent_at >= since,
                    sa.and_(Message.state == "sending", Message.sending_since >= since),
                ),
            )
        )
        or 0
    )


def evaluate(
    *,
    member_id: int | None,
    channel: Channel,
    purpose: Purpose,
    now: datetime,
    policy: Policy,
    urgent: bool = False,
) -> Verdict:
    """What to do with a message about to be sent. A message to a given address without a
    member (a login code to a new number) is only checked for being urgent."""
    channel, purpose = Channel(channel), Purpose(purpose)
    if member_id is None:
        return Verdict.send()
    if not allows(member_id, channel, purpose):
        if purpose is Purpose.MARKETING:
            return Verdict("suppress", f"no marketing consent for {channel.value}")
        return Verdict("suppress", f"{channel.value} turned off or member inactive")
    if policy.quiet_hours is not None and quiet_hours_apply(channel, purpose, urgent=urgent):
        member = person_of(member_id)
        timezone = member.timezone if member is not None else "UTC"
        until = policy.quiet_hours.ends_after(now, timezone)
        if until is not None:
            return Verdict("defer", f"quiet hours in {timezone}", until)
    cap = policy.marketing_cap
    if purpose is Purpose.MARKETING and cap is not None:
        sent = marketing_sent_count(member_id, now - cap.window)
        if sent >= cap.limit:
            return Verdict("suppress", f"frequency cap: {sent} marketing messages in {cap.window}")
    return Verdict.send()


# --- many messages at once (the send job's chunks) -------------------------------------------


def people_of(member_ids: Collection[int]) -> dict[int, Member]:
    """Each id's person now (merges followed), in at most two reads; the rows stay in the
    session's identity map, so `person_of` afterwards reads nothing."""
    ids = set(member_ids)
    if not ids:
        return {}
    rows = {m.id: m for m in db.session.scalars(sa.select(Member).where(any_of(Member.id, ids)))}
    survivors = {m.merged_into_id for m in rows.values() if m.merged_into_id is not None}
    missing = survivors - rows.keys()
    if missing:
        rows.update(
            {
                m.id: m
                for m in db.session.scalars(sa.select(Member).where(any_of(Member.id, missing)))
            }
        )
    people = {}
    for member_id in ids:
        member = rows.get(member_id)
        if member is not None and member.merged_into_id is not None:
            member = rows.get(member.merged_into_id)
        if member is not None:
            people[member_id] = member
    return people


class Evaluator:
    """`evaluate` for a chunk of messages: consent, the people and the frequency cap's
    counts read once for the chunk (a few statements however many messages), then each
    message judged in the caller's order. A message judged "send" counts towards its
    person's cap at once, as `sending` rows do for `evaluate`, so two messages of one
    chunk can't both slip under it."""

    def __init__(
        self,
        wanted: Iterable[tuple[int | None, Purpose]],
        *,
        now: datetime,
        policy: Policy,
    ) -> None:
        wanted = list(wanted)
        self.now, self.policy = now, policy
        self.people = people_of({m for m, _ in wanted if m is not None})
        person_ids = {person.id for person in self.people.values()}
        consents = MemberConsent.__table__
        self.consent: dict[tuple[int, str, str], bool] = {}
        if person_ids:
            self.consent = {
                (row.member_id, row.channel, row.purpose): bool(row.granted)
                for row in db.session.execute(
                    sa.select(
                        consents.c.member_id, consents.c.channel, consents.c.purpose,
                        consents.c.granted,
                    ).where(any_of(consents.c.member_id, person_ids))
                )
            }  # fmt: skip
        self.marketing_sent: dict[int, int] = defaultdict(int)
        cap = policy.marketing_cap
        marketing = {
            self.people[m].id
            for m, purpose in wanted
            if m in self.people and Purpose(purpose) is Purpose.MARKETING
        }
        if cap is not None and marketing:
            self._count_marketing(marketing, now - cap.window)

    def _count_marketing(self, person_ids: set[int], since: datetime) -> None:
        """`marketing_sent_count` for many people: their ids (merges) and one grouped count."""
        members = Member.__table__
        owner = dict(
            db.session.execute(
                sa.select(
                    members.c.id, sa.func.coalesce(members.c.merged_into_id, members.c.id)
                ).where(
                    sa.or_(
                        any_of(members.c.id, person_ids),
                        any_of(members.c.merged_into_id, person_ids),
                    )
                )
            ).all()
        )
        rows = db.session.execute(
            sa.select(Message.member_id, sa.func.count())
            .where(
                any_of(Message.member_id, owner),
                Message.purpose == Purpose.MARKETING.value,
                sa.or_(
                    Message.sent_at >= since,
                    sa.and_(Message.state == "sending", Message.sending_since >= since),
                ),
            )
            .group_by(Message.member_id)
        ).all()
        for member_id, count in rows:
            self.marketing_sent[owner[member_id]] += count

    def allows(self, member_id: int, channel: Channel, purpose: Purpose) -> bool:
        """`consent.allows` from the chunk's reads."""
        person = self.people.get(member_id)
        if person is None or person.status != MemberStatus.ACTIVE.value:
            return False
        granted = self.consent.get((person.id, channel.value, purpose.value))
        return consent_default(purpose) if granted is None else granted

    def __call__(
        self, *, member_id: int | None, channel: Channel, purpose: Purpose, urgent: bool = False
    ) -> Verdict:
        """The verdict `evaluate` would give (same rules, same reasons)."""
        channel, purpose = Channel(channel), Purpose(purpose)
        if member_id is None:
            return Verdict.send()
        if not self.allows(member_id, channel, purpose):
            if purpose is Purpose.MARKETING:
                return Verdict("suppress", f"no marketing consent for {channel.value}")
            return Verdict("suppress", f"{channel.value} turned off or member inactive")
        person = self.people[member_id]
        quiet = self.policy.quiet_hours
        if quiet is not None and quiet_hours_apply(channel, purpose, urgent=urgent):
            timezone = person.timezone
            until = quiet.ends_after(self.now, timezone)
            if until is not None:
                return Verdict("defer", f"quiet hours in {timezone}", until)
        cap = self.policy.marketing_cap
        if purpose is Purpose.MARKETING and cap is not None:
            sent = self.marketing_sent[person.id]
            if sent >= cap.limit:
                return Verdict(
                    "suppress", f"frequency cap: {sent} marketing messages in {cap.window}"
                )
            self.marketing_sent[person.id] += 1
        return Verdict.send()
