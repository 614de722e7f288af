"""Birthday and check-in bonuses are paid once per birthday and per day, whatever the
calendar year boundary or the member's own timezone changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.earning import operations
from loyalty.ledger import operations as ledger
from loyalty.members.operations import update_own_profile
from tests.earning.factories import rule


def claim(member_id, kind, now):
    activity, created = operations.record_activity(
        member_id,
        kind,
        reference=None,
        referred_member_id=None,
        client_id=None,
        now=now,
        actor="t",
    )
    db.session.commit()
    return activity.dedupe_key, created


def move_to(member_id, timezone):
    update_own_profile(member_id, {"timezone": timezone}, now=utcnow(), actor="member")
    db.session.commit()


def test_a_birthday_around_new_year_is_paid_once(app, make):
    rule(name="birthday", kind="event_bonus", activity_kind="birthday", bonus_points=100)
    member = make.member(birthday=date(1990, 1, 3))
    before = claim(member.id, "birthday", datetime(2026, 12, 28, 12, tzinfo=UTC))
    after = claim(member.id, "birthday", datetime(2027, 1, 5, 12, tzinfo=UTC))
    assert (before, after) == (("2027", True), ("2027", False))
    assert ledger.member_balance(member.id).balance == 100
    # The next birthday is paid again.
    assert claim(member.id, "birthday", datetime(2027, 12, 30, tzinfo=UTC)) == ("2028", True)


def test_changing_the_timezone_opens_no_second_birthday(app, make):
    rule(name="birthday", kind="event_bonus", activity_kind="birthday", bonus_points=100)
    member = make.member(birthday=date(1990, 1, 1), timezone="Pacific/Kiritimati")
    # 31 Dec 11:00 UTC is 1 January in Kiritimati (UTC+14), 31 December in Pago Pago.
    moment = datetime(2026, 12, 31, 11, tzinfo=UTC)
    assert claim(member.id, "birthday", moment) == ("2027", True)
    move_to(member.id, "Pacific/Pago_Pago")
    assert claim(member.id, "birthday", moment + timedelta(minutes=5))[1] is False
    assert ledger.member_balance(member.id).balance == 100


def test_changing_the_timezone_opens_no_second_checkin_the_same_day(app, make):
    rule(name="check-in", kind="event_bonus", activity_kind="app_checkin", bonus_points=5)
    member = make.member(timezone="UTC")
    first = datetime(2026, 3, 1, 10, tzinfo=UTC)  # 1 March in UTC
    assert claim(member.id, "app_checkin", first) == ("2026-03-01", True)
    # An hour later it is already 2 March in Kiritimati (UTC+14), still 1 March in UTC.
    move_to(member.id, "Pacific/Kiritimati")
    assert claim(member.id, "app_checkin", first + timedelta(hours=1))[1] is False
    # Back again: still 1 March.
    move_to(member.id, "UTC")
    assert claim(member.id, "app_checkin", first + timedelta(hours=2))[1] is False
    assert ledger.member_balance(member.id).balance == 5
    # The next day in both calendars pays again.
    assert claim(member.id, "app_checkin", first + timedelta(days=1)) == ("2026-03-02", True)


def test_a_traveller_checks_in_again_once_the_day_has_changed_in_both_timezones(app, make):
    rule(name="check-in", kind="event_bonus", activity_kind="app_checkin", bonus_points=5)
    member = make.member(timezone="America/Los_Angeles")
    # 20:00 on 1 March in Los Angeles (04:00 UTC on 2 March).
    evening = datetime(2026, 3, 2, 4, tzinfo=UTC)
    assert claim(member.id, "app_checkin", evening)[1] is True
    move_to(member.id, "Asia/Tokyo")
    # Landing in Tokyo: 2 March there, but still 1 March where the last check-in was made.
    assert claim(member.id, "app_checkin", evening + timedelta(hours=2))[1] is False
    # In Tokyo's calendar the last check-in was on 2 March too (13:00): 3 March pays.
    later = evening + timedelta(hours=12)  # 01:00 on 3 March in Tokyo
    assert claim(member.id, "app_checkin", later - timedelta(hours=2))[1] is False
    assert claim(member.id, "app_checkin", later) == ("2026-03-03", True)
    assert ledger.member_balance(member.id).balance == 10


def test_a_birthday_claimed_under_the_old_calendar_year_key_is_not_paid_again(app, make):
    """Keys recorded before this rule were the claim's year: 28 December 2026 -> "2026"."""
    from loyalty.earning.models import ActivityEvent

    rule(name="birthday", kind="event_bonus", activity_kind="birthday", bonus_points=100)
    member = make.member(birthday=date(1990, 1, 3))
    db.session.add(
        ActivityEvent(
            member_id=member.id,
            kind="birthday",
            dedupe_key="2026",
            points=100,
            breakdown=[],
            created_at=datetime(2026, 12, 28, 12, tzinfo=UTC),
        )
    )
    db.session.commit()
    assert claim(member.id, "birthday", datetime(2027, 1, 5, 12, tzinfo=UTC)) == ("2026", False)
    assert claim(member.id, "birthday", datetime(2027, 12, 28, tzinfo=UTC)) == ("2028", True)
