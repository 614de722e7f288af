"""Points that paid for an order come back once, under real concurrency (PostgreSQL)."""

from __future__ import annotations

import pytest

from loyalty.auth import scopes
from loyalty.db import db
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import PointHold
from tests.concurrency import in_threads
from tests.earning.factories import base_rate, order_body
from tests.factories import idem
from tests.ledger.invariants import assert_ledger_consistent

pytestmark = pytest.mark.postgres


def _paid_order(client, make, headers, *, paid, price, order_id="ORD-1"):
    member = make.member(points=1_000)
    base_rate()
    hold = client.post(
        f"/v1/members/{member.id}/holds", json={"points": paid}, headers=idem(headers)
    ).json
    body = order_body({"member_id": member.id}, ("A", None, 1, price), order_id=order_id)
    assert client.post("/v1/orders", json=body, headers=headers).status_code == 201
    captured = client.post(
        f"/v1/holds/{hold['id']}/capture", json={"order_id": order_id}, headers=idem(headers)
    )
    assert captured.status_code == 200, captured.json
    return member, hold["id"]


def test_concurrent_refunds_and_a_cancel_give_back_the_paid_points_exactly_once(app, client, make):
    headers = make.api_key(scopes.ORDERS_WRITE, scopes.POINTS_WRITE)
    member, hold_id = _paid_order(client, make, headers, paid=300, price=9_000)
    # 9 partial refunds of 1,000 each and a cancel, all at once.

    def act(i):
        test_client = app.test_client()
        if i == 9:
            return test_client.post("/v1/orders/ORD-1/cancel", headers=headers).status_code
        return test_client.post(
            "/v1/orders/ORD-1/refunds",
            json={"refund_id": f"R{i}", "amount_minor": 1_000},
            headers=headers,
        ).status_code

    codes = in_threads(app, 10, act)
    assert set(codes) <= {200, 201, 409}
    db.session.rollback()
    hold = db.session.get(PointHold, hold_id)
    assert (hold.captured, hold.returned) == (300, 300)
    # 1,000 - 300 paid + 90 earned, then everything undone: back to 1,000.
    assert ledger.member_balance(member.id).balance == 1_000
    assert_ledger_consistent()


def test_a_capture_racing_a_cancel_is_either_given_back_or_refused(app, client, make):
    headers = make.api_key(scopes.ORDERS_WRITE, scopes.POINTS_WRITE)
    for round_ in range(5):
        member = make.member(points=500)
        base_rate()
        order_id = f"RACE-{round_}"
        body = order_body({"member_id": member.id}, ("A", None, 1, 1_000), order_id=order_id)
        assert client.post("/v1/orders", json=body, headers=headers).status_code == 201
        hold = client.post(
            f"/v1/members/{member.id}/holds", json={"points": 200}, headers=idem(headers)
        ).json

        def act(i, hold_id=hold["id"], order_id=order_id):
            test_client = app.test_client()
            if i == 0:
                return test_client.post(
                    f"/v1/holds/{hold_id}/capture",
                    json={"order_id": order_id},
                    headers=idem(headers),
                ).status_code
            return test_client.post(f"/v1/orders/{order_id}/cancel", headers=headers).status_code

        capture_code, cancel_code = in_threads(app, 2, act)
        assert cancel_code == 200 and capture_code in {200, 409}
        db.session.rollback()
        # Either the capture came first and the cancel gave the 200 back, or the cancel
        # came first and the capture was refused: the member has their 500 either way.
        assert ledger.member_balance(member.id).balance == 500, capture_code
    assert_ledger_consistent()


def test_a_capture_racing_a_refund_that_needs_the_held_points(app, client, make):
    """The member's 100 points came from an order; 80 are held. The order is cancelled
    while the till captures: either the capture spends 80 first (the cancel takes the
    other 20 and, under cap-at-zero, forgives the rest) or the cancel voids the hold
    first (all 100 taken back, the capture is a 409). Never both, never below zero."""
    headers = make.api_key(scopes.ORDERS_WRITE, scopes.POINTS_WRITE)
    base_rate()
    for round_ in range(5):
        member = make.member()
        order_id = f"VOID-{round_}"
        body = order_body({"member_id": member.id}, ("A", None, 1, 10_000), order_id=order_id)
        assert client.post("/v1/orders", json=body, headers=headers).json["points_earned"] == 100
        hold = client.post(
            f"/v1/members/{member.id}/holds", json={"points": 80}, headers=idem(headers)
        ).json

        def act(i, hold_id=hold["id"], order_id=order_id):
            test_client = app.test_client()
            if i == 0:
                return test_client.post(
                    f"/v1/holds/{hold_id}/capture", json={}, headers=idem(headers)
                ).status_code
            return test_client.post(f"/v1/orders/{order_id}/cancel", headers=headers).status_code

        capture_code, cancel_code = in_threads(app, 2, act)
        assert cancel_code == 200 and capture_code in {200, 409}
        db.session.rollback()
        after = ledger.member_balance(member.id)
        assert (after.balance, after.held, after.debt) == (0, 0, 0)
        status = db.session.get(PointHold, hold["id"]).status
        assert status == ("captured" if capture_code == 200 else "voided")
    assert_ledger_consistent()
