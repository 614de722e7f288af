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
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from loyalty.db import db
from loyalty.members.resolution import current_member_id, history_member_ids
from notifications.consent import Purpose, allows, person_of
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
                Message.member_id.in_(ids),
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
