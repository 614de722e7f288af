"""Points under an active hold are not expired until the hold ends, whenever the job runs.

Lot A (100) is due at DUE, lot B (100) much later; a checkout holds 100 just before DUE.
The held points are the soonest-expiring ones (those a capture spends), so the expiry job
skips them: the books end the same whether the job runs before or after the capture or
release.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loyalty.db import db
from loyalty.ledger import operations as ledger
from tests.ledger.invariants import assert_ledger_consistent

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DUE = T0 + timedelta(days=10)


def setup(make):
    member = make.member(now=T0)
    make.earn(member.id, 100, now=T0, cause_ref="a", expires_at=DUE)
    make.earn(member.id, 100, now=T0, cause_ref="b", expires_at=DUE + timedelta(days=365))
    hold = ledger.hold_points(
        member.id,
        100,
        now=DUE - timedelta(minutes=5),
        ttl_seconds=3600,
        reference=None,
        client_id=None,
        store_id=None,
    )
    db.session.commit()
    return member, hold


def end_hold(hold, how, at):
    if how == "capture":
        ledger.capture_hold(hold.id, None, ledger.Cause("hold", "basket"), now=at, actor="t")
    else:
        ledger.release_hold(hold.id, now=at)
    db.session.commit()


def run_expiry(at):
    expired = ledger.expire_points(at)
    db.session.commit()
    return expired


# After a capture the member keeps lot B; after a release lot A expires (on the next run).
EXPECTED = {"capture": 100, "release": 100}


@pytest.mark.parametrize("how", ["capture", "release"])
def test_expiry_before_the_hold_ends_skips_the_held_points(app, make, how):
    member, hold = setup(make)
    assert run_expiry(DUE + timedelta(minutes=1)) == 0  # all 100 due points are held
    end_hold(hold, how, DUE + timedelta(minutes=2))
    run_expiry(DUE + timedelta(minutes=3))
    assert ledger.member_balance(member.id).balance == EXPECTED[how]
    assert ledger.member_balance(member.id).held == 0
    assert_ledger_consistent()


@pytest.mark.parametrize("how", ["capture", "release"])
def test_expiry_after_the_hold_ends_gives_the_same_books(app, make, how):
    member, hold = setup(make)
    end_hold(hold, how, DUE - timedelta(minutes=1))
    run_expiry(DUE + timedelta(minutes=1))
    assert ledger.member_balance(member.id).balance == EXPECTED[how]
    assert_ledger_consistent()


def test_only_the_due_points_beyond_the_holds_expire(app, make):
    member = make.member(now=T0)
    make.earn(member.id, 100, now=T0, cause_ref="a", expires_at=DUE)
    make.earn(member.id, 100, now=T0, cause_ref="b", expires_at=DUE + timedelta(days=365))
    ledger.hold_points(
        member.id,
        30,
        now=T0,
        ttl_seconds=86400 * 30,
        reference=None,
        client_id=None,
        store_id=None,
    )
    db.session.commit()
    assert run_expiry(DUE) == 70
    balance = ledger.member_balance(member.id)
    assert (balance.balance, balance.held, balance.available) == (130, 30, 100)
    assert_ledger_consistent()
