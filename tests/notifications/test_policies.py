"""Send-time policies: consent, quiet hours in the member's timezone (defer, never drop),
the marketing frequency cap; each suppression and deferral recorded with its reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loyalty.clock import utcnow
from loyalty.db import db
from notifications import consent, policies
from notifications.consent import Purpose
from notifications.policies import FrequencyCap, QuietHours
from notifications.providers.base import Channel
from tests.notifications.factories import queue, reload, send_round, transitions

PHONE = "+4915112345678"
NIGHT = QuietHours.parse("21:00-08:00")
# 23:30 in Shanghai (UTC+8) is 15:30 UTC; the quiet hours there end at 00:00 UTC.
SHANGHAI_NIGHT = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)


def opt_in(member_id: int, channel: Channel = Channel.SMS) -> None:
    consent.record_consent(member_id, channel, Purpose.MARKETING, True,
                           source="web", now=utcnow(), actor="test")  # fmt: skip
    db.session.commit()


def test_marketing_without_consent_is_suppressed_with_the_reason(make):
    member = make.member(phone=PHONE)
    message = queue(member.id, purpose=Purpose.MARKETING)
    send_round()
    assert transitions(message.id)[-1] == ("suppressed", "no marketing consent for sms")


def test_marketing_with_consent_goes_out(make):
    member = make.member(phone=PHONE)
    opt_in(member.id)
    message = queue(member.id, purpose=Purpose.MARKETING)
    send_round()
    assert reload(message.id).state == "sent"


def test_consent_revoked_after_queueing_is_honoured_at_send_time(make):
    member = make.member(phone=PHONE)
    opt_in(member.id)
    message = queue(member.id, purpose=Purpose.MARKETING)
    consent.record_consent(member.id, Channel.SMS, Purpose.MARKETING, False,
                           source="app", now=utcnow(), actor="member")  # fmt: skip
    db.session.commit()
    send_round()
    assert reload(message.id).state == "suppressed"


def test_quiet_hours_defer_to_their_end_in_the_members_timezone_then_send(make):
    member = make.member(phone=PHONE, timezone="Asia/Shanghai")
    message = queue(member.id, now=SHANGHAI_NIGHT)
    send_round(now=SHANGHAI_NIGHT, notify_quiet_hours=NIGHT)
    deferred = reload(message.id)
    assert deferred.state == "deferred"
    assert deferred.next_attempt_at == datetime(2026, 12, 2, 0, 0, tzinfo=UTC)  # 08:00 local
    assert transitions(message.id)[-1] == ("deferred", "quiet hours in Asia/Shanghai")
    send_round(now=SHANGHAI_NIGHT + timedelta(hours=8, minutes=31), notify_quiet_hours=NIGHT)
    assert reload(message.id).state == "sent"


def test_the_same_moment_is_not_quiet_for_a_member_elsewhere(make):
    member = make.member(phone=PHONE, timezone="Europe/Berlin")  # 16:30 there
    message = queue(member.id, now=SHANGHAI_NIGHT)
    send_round(now=SHANGHAI_NIGHT, notify_quiet_hours=NIGHT)
    assert reload(message.id).state == "sent"


def test_transactional_email_and_login_codes_ignore_quiet_hours(make):
    member = make.member(phone=PHONE, timezone="Asia/Shanghai")
    email = queue(member.id, channel=Channel.EMAIL, now=SHANGHAI_NIGHT)
    code = queue(None, template="login_code", variables={"code": "1"}, destination=PHONE,
                 now=SHANGHAI_NIGHT)  # fmt: skip
    send_round(now=SHANGHAI_NIGHT, notify_quiet_hours=NIGHT)
    assert reload(email.id).state == reload(code.id).state == "sent"


def test_the_frequency_cap_counts_marketing_over_a_rolling_window(make):
    member = make.member(phone=PHONE, email="a@example.org")
    opt_in(member.id)
    opt_in(member.id, Channel.EMAIL)
    cap = FrequencyCap.parse("2/7d")
    start = utcnow()
    sent = [queue(member.id, purpose=Purpose.MARKETING, now=start) for _ in range(2)]
    send_round(now=start, notify_marketing_cap=cap)
    assert [reload(m.id).state for m in sent] == ["sent", "sent"]
    third = queue(member.id, channel=Channel.EMAIL, purpose=Purpose.MARKETING,
                  now=start + timedelta(days=6))  # fmt: skip
    receipt = queue(member.id, now=start + timedelta(days=6))  # transactional: not counted
    send_round(now=start + timedelta(days=6), notify_marketing_cap=cap)
    assert reload(third.id).state == "suppressed"
    assert reload(third.id).reason.startswith("frequency cap: 2 marketing messages")
    assert reload(receipt.id).state == "sent"
    later = queue(member.id, purpose=Purpose.MARKETING, now=start + timedelta(days=7, hours=1))
    send_round(now=start + timedelta(days=7, hours=1), notify_marketing_cap=cap)
    assert reload(later.id).state == "sent"  # the window rolled past the first two


@pytest.mark.parametrize(
    ("local", "quiet_until"),
    [
        ("2026-03-08T21:30", "2026-03-09T08:00"),  # crossing midnight
        ("2026-03-09T07:59", "2026-03-09T08:00"),
        ("2026-03-09T08:00", None),
        ("2026-03-09T20:59", None),
    ],
)
def test_quiet_hours_window(local, quiet_until):
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("America/New_York")
    now = datetime.fromisoformat(local).replace(tzinfo=zone)
    end = NIGHT.ends_after(now, "America/New_York")
    expected = datetime.fromisoformat(quiet_until).replace(tzinfo=zone) if quiet_until else None
    assert end == expected


def test_policy_settings_are_parsed_strictly():
    with pytest.raises(ValueError):
        QuietHours.parse("9pm-8am")
    with pytest.raises(ValueError):
        FrequencyCap.parse("0/7d")
    assert FrequencyCap.parse("3/24h").window == timedelta(hours=24)
    assert policies.evaluate(member_id=None, channel=Channel.SMS, purpose=Purpose.TRANSACTIONAL,
                             now=utcnow(), policy=policies.Policy()).action == "send"  # fmt: skip


def test_the_cap_holds_within_one_chunk_of_messages(make):
    member = make.member(phone=PHONE)
    opt_in(member.id)
    ids = [queue(member.id, purpose=Purpose.MARKETING).id for _ in range(3)]
    send_round(notify_marketing_cap=FrequencyCap.parse("2/1d"))
    assert [reload(i).state for i in ids] == ["sent", "sent", "suppressed"]
