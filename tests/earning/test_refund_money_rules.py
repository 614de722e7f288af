"""What a refund may take back: the order's own points first; never expired points a
second time; held points are not shielded; free orders refund by units.

See docs/architecture.md, "Return policy".
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import Conflict, InsufficientPoints
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import HoldStatus, LedgerTransaction, PointHold, TransactionKind
from loyalty.ledger.policy import ReturnPolicy
from tests.earning.factories import base_rate, order_body, rule
from tests.ledger.invariants import assert_ledger_consistent


@pytest.fixture
def pos(make):
    return make.api_key(scopes.ORDERS_WRITE)


def use_policy(app, monkeypatch, policy):
    settings = dataclasses.replace(app.extensions["omniloyal.settings"], return_policy=policy)
    monkeypatch.setitem(app.extensions, "omniloyal.settings", settings)


def post(client, headers, member_id, *lines, **more):
    response = client.post(
        "/v1/orders", json=order_body({"member_id": member_id}, *lines, **more), headers=headers
    )
    assert response.status_code == 201, response.json
    return response.json


def refund(client, headers, order_id, refund_id, **body):
    response = client.post(
        f"/v1/orders/{order_id}/refunds", json={"refund_id": refund_id, **body}, headers=headers
    )
    assert response.status_code == 201, response.json
    return response.json


def balance(member_id):
    db.session.rollback()
    return ledger.member_balance(member_id)


def expire_the_order_points():
    """Run expiry after the default policy (months:24:end) ends the order's lot."""
    expired = ledger.expire_points(utcnow() + timedelta(days=800))
    db.session.commit()
    return expired


class TestExpiredOrderPoints:
    """500 points from elsewhere (expiring much later) + an order that earned 100."""

    def setup(self, client, make, pos):
        member = make.member()
        make.earn(member.id, 500, expires_at=utcnow() + timedelta(days=4000))
        base_rate()
        order = post(client, pos, member.id, ("A", None, 1, 10_000))
        assert order["points_earned"] == 100
        return member, order

    @pytest.mark.parametrize("policy", [ReturnPolicy.CAP_AT_ZERO, ReturnPolicy.CLAW_BACK])
    def test_a_refund_after_the_order_points_expired_takes_nothing_twice(
        self, app, client, make, pos, monkeypatch, policy
    ):
        use_policy(app, monkeypatch, policy)
        member, order = self.setup(client, make, pos)
        assert expire_the_order_points() == 100
        data = refund(client, pos, order["order_id"], "R1", amount_minor=10_000)
        assert (data["points_reversed"], data["already_expired"]) == (100, 100)
        assert (data["revoked_available"], data["clawed_back"], data["forgiven"]) == (0, 0, 0)
        after = balance(member.id)
        assert (after.balance, after.debt) == (500, 0)
        assert_ledger_consistent()

    def test_the_spent_part_follows_the_policy_and_the_expired_part_is_never_taken(
        self, client, make, pos
    ):
        member, order = self.setup(client, make, pos)
        # 30 of the order's points are spent (its lot expires first, so burns take it
        # first), the other 70 expire.
        ledger.burn_points(member.id, 30, ledger.Cause("t", "b"), now=utcnow(), actor="t")
        db.session.commit()
        assert expire_the_order_points() == 70
        first = refund(client, pos, order["order_id"], "R1", amount_minor=5_000)
        second = refund(client, pos, order["order_id"], "R2", amount_minor=5_000)
        # Expired points count first: the first half takes nothing, the second takes the
        # 30 spent ones (cap-at-zero: from the other lots).
        assert (first["already_expired"], first["revoked_available"]) == (50, 0)
        assert (second["already_expired"], second["revoked_available"]) == (20, 30)
        # The 30 spent were the order's own (the 500 were untouched): they are paid back.
        assert balance(member.id).balance == 500 - 30
        assert_ledger_consistent()

    def test_what_the_order_lot_still_holds_is_taken_first(self, client, make, pos):
        member, order = self.setup(client, make, pos)
        data = refund(client, pos, order["order_id"], "R1", amount_minor=10_000)
        assert (data["revoked_available"], data["already_expired"]) == (100, 0)
        assert balance(member.id).balance == 500
        assert_ledger_consistent()


class TestHeldPointsAreNotShielded:
    """100 points earned by an order, 80 of them held for a checkout, the order reversed."""

    def reverse_with_hold(self, make, policy):
        member = make.member()
        make.earn(member.id, 100, cause_ref="order-1")
        hold = ledger.hold_points(
            member.id,
            80,
            now=utcnow(),
            ttl_seconds=600,
            reference=None,
            client_id=None,
            store_id=None,
        )
        db.session.commit()
        result = ledger.reverse_earned(
            member.id,
            100,
            ledger.Cause("refund", "r"),
            earned_by="order-1",
            policy=policy,
            now=utcnow(),
            actor="t",
            earned=100,
        )
        db.session.commit()
        return member, hold, result

    @pytest.mark.parametrize("policy", [ReturnPolicy.CAP_AT_ZERO, ReturnPolicy.CLAW_BACK])
    def test_a_reversal_takes_held_points_and_voids_the_hold(self, app, make, policy):
        member, hold, result = self.reverse_with_hold(make, policy)
        assert (result.revoked_available, result.clawed_back, result.forgiven) == (100, 0, 0)
        assert result.voided_hold_ids == [hold.id]
        after = ledger.member_balance(member.id)
        assert (after.balance, after.debt, after.held, after.available) == (0, 0, 0, 0)
        assert db.session.get(PointHold, hold.id).status == HoldStatus.VOIDED
        # The checkout can't spend the points any more, releasing changes nothing, and
        # nothing is left to spend: the member never ends below zero.
        with pytest.raises(Conflict):
            ledger.capture_hold(hold.id, None, ledger.Cause("hold", "x"), now=utcnow(), actor="t")
        db.session.rollback()
        ledger.release_hold(hold.id, now=utcnow())
        with pytest.raises(InsufficientPoints):
            ledger.burn_points(member.id, 80, ledger.Cause("t", "b"), now=utcnow(), actor="t")
        db.session.rollback()
        assert ledger.member_balance(member.id).balance == 0
        tx = db.session.scalar(
            sa.select(LedgerTransaction).where(LedgerTransaction.kind == TransactionKind.REVERSE)
        )
        assert tx.details["voided_hold_ids"] == [hold.id]
        assert_ledger_consistent()

    def test_holds_the_reversal_does_not_need_stay_active(self, app, make):
        member = make.member()
        make.earn(member.id, 100, cause_ref="order-1")
        make.earn(member.id, 300, cause_ref="other")
        older = ledger.hold_points(
            member.id,
            150,
            now=utcnow(),
            ttl_seconds=600,
            reference=None,
            client_id=None,
            store_id=None,
        )
        newer = ledger.hold_points(
            member.id,
            120,
            now=utcnow() + timedelta(seconds=1),
            ttl_seconds=600,
            reference=None,
            client_id=None,
            store_id=None,
        )
        db.session.commit()
        # 400 points, 270 held: taking 100 back needs 100 free, 130 are: nothing voided.
        result = ledger.reverse_earned(
            member.id,
            100,
            ledger.Cause("refund", "r"),
            earned_by="order-1",
            policy=ReturnPolicy.CLAW_BACK,
            now=utcnow(),
            actor="t",
        )
        db.session.commit()
        assert result.voided_hold_ids == []
        # A second order's 300 back: 300 of 300 must be free, 30 are: the newest hold goes
        # first (120 -> 150 free), then the older (all 300 free).
        result = ledger.reverse_earned(
            member.id,
            300,
            ledger.Cause("refund", "r2"),
            earned_by="other",
            policy=ReturnPolicy.CLAW_BACK,
            now=utcnow(),
            actor="t",
        )
        db.session.commit()
        assert result.voided_hold_ids == [newer.id, older.id]
        assert ledger.member_balance(member.id).balance == 0
        assert_ledger_consistent()

    def test_pending_only_never_touches_held_points(self, app, make):
        _member, hold, result = self.reverse_with_hold(make, ReturnPolicy.PENDING_ONLY)
        # Recorded all the same (0 points, no entries): tier qualification drops by it.
        assert (result.transaction.amount, result.forgiven, result.voided_hold_ids) == (0, 100, [])
        assert db.session.get(PointHold, hold.id).status == HoldStatus.ACTIVE


class TestFreeOrders:
    def test_a_line_refund_of_a_zero_total_order_reverses_by_units(self, client, make, pos):
        member = make.member()
        rule(name="free gift bonus", kind="bonus", skus=["GIFT"], bonus_points=10)
        order = post(client, pos, member.id, ("GIFT", None, 4, 0))
        assert (order["total_minor"], order["points_earned"]) == (0, 40)
        first = refund(client, pos, order["order_id"], "R1", lines=[{"index": 0, "quantity": 1}])
        assert (first["points_reversed"], first["order_status"]) == (10, "partially_refunded")
        rest = refund(client, pos, order["order_id"], "R2", lines=[{"index": 0, "quantity": 3}])
        assert (rest["points_reversed"], rest["order_status"]) == (30, "refunded")
        assert balance(member.id).balance == 0
        assert_ledger_consistent()

    def test_an_amount_refund_of_a_zero_total_order_is_a_422(self, client, make, pos):
        member = make.member()
        rule(name="free gift bonus", kind="bonus", skus=["GIFT"], bonus_points=10)
        order = post(client, pos, member.id, ("GIFT", None, 1, 0))
        response = client.post(
            f"/v1/orders/{order['order_id']}/refunds",
            json={"refund_id": "R1", "amount_minor": 1},
            headers=pos,
        )
        assert response.status_code == 422
        assert response.content_type == "application/problem+json"
