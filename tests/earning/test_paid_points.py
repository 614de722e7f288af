"""Points that paid for an order come back when the order is refunded or cancelled.

A till holds points, captures them against the order (`order_id` on the capture), and a
refund or cancellation of that order gives them back through the ledger: in proportion
for partial refunds, once, never more than was captured.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.db import db
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import LedgerTransaction, PointHold, TransactionKind
from tests.earning.factories import base_rate, order_body
from tests.factories import idem
from tests.ledger.invariants import assert_ledger_consistent


@pytest.fixture
def till(make):
    store = make.store()
    return make.api_key(scopes.ORDERS_WRITE, scopes.POINTS_WRITE, store_id=store.id)


def hold(client, headers, member_id, points):
    response = client.post(
        f"/v1/members/{member_id}/holds", json={"points": points}, headers=idem(headers)
    )
    assert response.status_code == 201, response.json
    return response.json["id"]


def capture(client, headers, hold_id, order_id, points=None):
    body = {"order_id": order_id} if points is None else {"order_id": order_id, "points": points}
    return client.post(f"/v1/holds/{hold_id}/capture", json=body, headers=idem(headers))


def post(client, headers, member_id, price, order_id):
    body = order_body({"member_id": member_id}, ("A", None, 2, price // 2), order_id=order_id)
    response = client.post("/v1/orders", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def paid_order(client, make, till, *, points=328, paid=200, price=6_200, order_id="ORD-1"):
    """328 points; 200 pay for an order of 62.00 that earns 62: 328 - 200 + 62 = 190."""
    member = make.member(points=points)
    base_rate()
    hold_id = hold(client, till, member.id, paid)
    order = post(client, till, member.id, price, order_id)
    assert capture(client, till, hold_id, order_id).status_code == 200
    return member, order, hold_id


def balance(member_id):
    db.session.rollback()
    return ledger.member_balance(member_id).balance


def test_cancelling_an_order_gives_back_the_points_that_paid_for_it(client, make, till):
    member, order, _ = paid_order(client, make, till)
    assert balance(member.id) == 190
    response = client.post(f"/v1/orders/{order['order_id']}/cancel", headers=till)
    assert response.status_code == 200, response.json
    assert response.json["cancellation"]["points_returned"] == 200
    assert balance(member.id) == 328
    assert_ledger_consistent()


def test_a_full_refund_gives_back_the_points_that_paid_for_it(client, make, till):
    member, order, _ = paid_order(client, make, till)
    response = client.post(
        f"/v1/orders/{order['order_id']}/refunds",
        json={"refund_id": "R1", "amount_minor": 6_200},
        headers=till,
    )
    assert response.status_code == 201, response.json
    assert response.json["points_returned"] == 200
    assert balance(member.id) == 328
    returned = db.session.scalars(
        sa.select(LedgerTransaction).where(
            LedgerTransaction.kind == TransactionKind.REVERSE_BURN.value
        )
    ).all()
    assert [tx.amount for tx in returned] == [200]  # a new ledger entry, not an edit
    assert_ledger_consistent()


def test_partial_refunds_give_back_in_proportion_and_never_more_than_was_paid(client, make, till):
    member, order, hold_id = paid_order(client, make, till, paid=100, price=3_000)
    refunds = [("R1", 1_000), ("R2", 1_000), ("R3", 1_000)]
    returned = []
    for refund_id, amount in refunds:
        response = client.post(
            f"/v1/orders/{order['order_id']}/refunds",
            json={"refund_id": refund_id, "amount_minor": amount},
            headers=till,
        )
        assert response.status_code == 201, response.json
        returned.append(response.json["points_returned"])
    assert returned == [33, 33, 34]  # floor(100 * 1/3), floor(100 * 2/3) - 33, the rest
    # A repeated refund (same id) replays and gives nothing more; a cancel neither.
    again = client.post(
        f"/v1/orders/{order['order_id']}/refunds",
        json={"refund_id": "R3", "amount_minor": 1_000},
        headers=till,
    )
    assert again.status_code == 201 and again.json["points_returned"] == 34
    cancelled = client.post(f"/v1/orders/{order['order_id']}/cancel", headers=till)
    assert cancelled.json["cancellation"]["points_returned"] == 0
    shown = client.get(f"/v1/holds/{hold_id}", headers=till).json
    assert (shown["order_id"], shown["captured"], shown["returned"]) == ("ORD-1", 100, 100)
    db.session.rollback()
    stored = db.session.get(PointHold, hold_id)
    assert (stored.captured, stored.returned) == (100, 100)
    assert balance(member.id) == 328
    assert_ledger_consistent()


def test_a_capture_against_a_cancelled_order_is_refused(client, make, till):
    member = make.member(points=300)
    base_rate()
    post(client, till, member.id, 5_000, "ORD-9")
    assert client.post("/v1/orders/ORD-9/cancel", headers=till).status_code == 200
    hold_id = hold(client, till, member.id, 100)
    response = capture(client, till, hold_id, "ORD-9")
    assert response.status_code == 409, response.json
    assert balance(member.id) == 300


def test_returned_points_keep_the_expiry_of_the_lots_they_were_paid_from(client, make, till):
    from datetime import timedelta

    from loyalty.clock import utcnow
    from loyalty.ledger.models import LotStatus, PointLot

    member = make.member()
    soon = utcnow() + timedelta(days=10)
    make.earn(member.id, 150, expires_at=soon)
    make.earn(member.id, 100, expires_at=soon + timedelta(days=300))
    base_rate()
    hold_id = hold(client, till, member.id, 200)
    order = post(client, till, member.id, 1_000, "ORD-2")
    assert capture(client, till, hold_id, "ORD-2").status_code == 200
    client.post(f"/v1/orders/{order['order_id']}/cancel", headers=till)
    db.session.rollback()
    lots = db.session.execute(
        sa.select(PointLot.remaining, PointLot.expires_at)
        .where(PointLot.member_id == member.id, PointLot.status == LotStatus.AVAILABLE.value)
        .order_by(PointLot.id)
    ).all()
    assert [(remaining, at.date()) for remaining, at in lots] == [
        (50, (soon + timedelta(days=300)).date()),  # what the capture didn't spend
        (150, soon.date()),
        (50, (soon + timedelta(days=300)).date()),
    ]


def test_points_paid_before_a_merge_come_back_to_the_survivor(client, make, till):
    from loyalty.clock import utcnow
    from loyalty.members.merge import merge_members

    member, order, _ = paid_order(client, make, till)
    survivor = make.member(points=10)
    merge_members(survivor.id, member.id, reason="duplicate", now=utcnow(), actor="support")
    db.session.commit()
    assert balance(survivor.id) == 200  # 190 + 10
    response = client.post(f"/v1/orders/{order['order_id']}/cancel", headers=till)
    assert response.json["cancellation"]["points_returned"] == 200
    assert balance(survivor.id) == 200 + 200 - 62
    assert_ledger_consistent()
