"""A provider opt-out racing a merge is never lost (PostgreSQL, two threads)."""

from __future__ import annotations

import pytest

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.members.merge import merge_members
from notifications import consent
from notifications.consent import Purpose
from notifications.inbound import apply_keyword
from notifications.providers.base import Channel
from tests.concurrency import run_between

pytestmark = pytest.mark.postgres
PHONE = "+4915112345688"


def _members(make) -> tuple[int, int]:
    survivor = make.member(email="survivor@example.com")
    merged = make.member(phone=PHONE)
    for member_id in (survivor.id, merged.id):
        consent.record_consent(member_id, Channel.SMS, Purpose.MARKETING, True, source="store",
                               now=utcnow(), actor="test")  # fmt: skip
    db.session.commit()
    return survivor.id, merged.id


def _sms_allowed(member_id: int) -> tuple[bool, bool]:
    return (
        consent.allows(member_id, Channel.SMS, Purpose.MARKETING),
        consent.allows(member_id, Channel.SMS, Purpose.TRANSACTIONAL),
    )


def test_a_stop_that_arrives_while_a_merge_commits_lands_on_the_survivor(app, make):
    survivor, merged = _members(make)

    def merging() -> None:
        merge_members(survivor, merged, reason=None, now=utcnow(), actor="support:1")

    def stop() -> None:  # Twilio's inbound STOP for the merged member's number
        assert apply_keyword(PHONE, "STOP", now=utcnow()) == 1

    assert run_between(app, merging, stop) == []
    assert _sms_allowed(survivor) == (False, False)
    assert _sms_allowed(merged) == (False, False)


def test_a_merge_that_waits_for_a_stop_folds_the_opt_out(app, make):
    survivor, merged = _members(make)

    def stop() -> None:
        assert apply_keyword(PHONE, "STOP", now=utcnow()) == 1

    def merging() -> None:
        merge_members(survivor, merged, reason=None, now=utcnow(), actor="support:1")

    assert run_between(app, stop, merging) == []
    assert _sms_allowed(survivor) == (False, False)
