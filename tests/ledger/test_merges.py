"""The ledger after a merge: every write naming a merged id books on the person it belongs
to now; a merged member's own ledger adds up to zero; reminders aren't sent twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import LedgerTransaction
from loyalty.members.merge import merge_members
from loyalty.outbox import OutboxEvent
from tests.ledger.invariants import assert_ledger_consistent

pytestmark = pytest.mark.usefixtures("app")


def merge(survivor_id: int, merged_id: int) -> None:
    merge_members(survivor_id, merged_id, reason="same person", now=utcnow(), actor="t")
    db.session.commit()


def test_writes_naming_a_merged_id_book_on_the_survivor(make):
    """The id a caller looked up before a merge committed still reaches the person: the
    lock helper resolves it again under the row lock."""
    survivor, duplicate = make.member(), make.member(points=300)
    burn = ledger.burn_points(
        duplicate.id, 300, ledger.Cause("reward", "c1"), now=utcnow(), actor="t"
    )
    db.session.commit()
    merge(survivor.id, duplicate.id)
    now = utcnow()

    earned = ledger.earn_points(duplicate.id, 10, ledger.Cause("order", "o1"), now=now, actor="t")
    adjusted = ledger.adjust_points(
        duplicate.id, 41, reason="goodwill", actor="t", now=now, reference="a1"
    )
    returned = ledger.reverse_burn(burn.id, ledger.Cause("reward_return", "c1"), now=now, actor="t")
    hold = ledger.hold_points(
        duplicate.id, 5, now=now, ttl_seconds=60, reference=None, client_id=None, store_id=None
    )
    db.session.commit()

    assert {earned.member_id, adjusted.member_id, returned.member_id, hold.member_id} == {
        survivor.id
    }
    balance = ledger.member_balance(survivor.id)
    assert (balance.balance, balance.held) == (351, 5)
    assert ledger.member_balance(duplicate.id).balance == 0
    assert_ledger_consistent()


def test_the_merge_moves_points_through_one_transaction_per_member(make):
    survivor, duplicate = make.member(points=10), make.member(points=30)
    make.earn(duplicate.id, 7, pending_days=3)
    merge(survivor.id, duplicate.id)

    merges = db.session.scalars(
        sa.select(LedgerTransaction)
        .where(LedgerTransaction.kind == "merge")
        .order_by(LedgerTransaction.id)
    ).all()
    assert [(tx.member_id, tx.amount) for tx in merges] == [(duplicate.id, -37), (survivor.id, 37)]
    assert (
        "points.merged_away"
        in db.session.scalars(
            sa.select(OutboxEvent.topic).where(OutboxEvent.member_id == duplicate.id)
        ).all()
    )
    assert_ledger_consistent()


def test_expiry_reminders_are_not_repeated_after_a_merge(make):
    now = utcnow()
    soon = now + timedelta(days=10)
    survivor, duplicate = make.member(), make.member()
    make.earn(duplicate.id, 100, expires_at=soon)
    make.earn(survivor.id, 20, expires_at=now + timedelta(days=200))
    assert ledger.announce_expiring_points(now, within_days=30) == 1
    db.session.commit()
    merge(survivor.id, duplicate.id)

    assert ledger.announce_expiring_points(now + timedelta(days=1), within_days=30) == 0
    db.session.commit()
    reminders = db.session.scalars(
        sa.select(OutboxEvent.payload).where(OutboxEvent.topic == "points.expiring")
    ).all()
    assert [r["points"] for r in reminders] == [100]
