"""Coupons redeemed with an order: points are earned on what was paid; cancel gives them back."""

from __future__ import annotations

from loyalty.auth import scopes
from loyalty.db import db
from tests.coupons.factories import code_row, codes, offer
from tests.earning.factories import base_rate, order_body


def test_an_order_with_a_coupon_earns_on_the_discounted_amount_and_cancel_restores_the_use(
    client, make
):
    base_rate()
    pos = make.api_key(scopes.ORDERS_WRITE)
    member = make.member()
    (code,) = codes(offer(percent_bp=2_000).id)  # 20 % off
    body = order_body({"member_id": member.id}, ("A", "shoes", 1, 10_000), coupon_codes=[code])
    response = client.post("/v1/orders", json=body, headers=pos)
    assert response.status_code == 201, response.json
    data = response.json
    assert (data["subtotal_minor"], data["discount_minor"], data["total_minor"]) == (
        10_000,
        2_000,
        8_000,
    )
    assert data["points_earned"] == 80
    assert len(data["coupons"]) == 1
    assert code_row(code).uses == 1
    again = client.post("/v1/orders", json=body, headers=pos)
    assert again.status_code == 201 and again.json == data
    assert again.headers["Idempotent-Replayed"] == "true"
    assert code_row(code).uses == 1
    cancelled = client.post(f"/v1/orders/{data['order_id']}/cancel", headers=pos)
    assert cancelled.json["status"] == "cancelled"
    assert code_row(code).uses == 0


def test_an_orders_redemption_is_rolled_back_only_through_the_orders_cancel_or_refund(client, make):
    make.store("S1")
    till = make.api_key(scopes.ORDERS_WRITE, scopes.COUPONS_REDEEM, store_id="S1")
    member_id = make.member().id
    (code,) = codes(offer(percent_bp=2_000).id)  # single use
    first = client.post("/v1/orders", json=order_body({"member_id": member_id}, channel="store",
                        coupon_codes=[code]), headers=till).json  # fmt: skip
    [redemption] = first["coupons"]
    rollback = client.post(
        f"/v1/coupons/redemptions/{redemption['redemption_id']}/rollback",
        headers={**till, "Idempotency-Key": "rb-1"},
    )
    assert rollback.status_code == 409
    assert rollback.json["reason"] == "belongs_to_order"
    assert rollback.headers["Content-Type"] == "application/problem+json"
    assert code_row(code).uses == 1
    # Before the fix the rollback freed the code, and it discounted a second order while the
    # first kept its discount.
    second = order_body({"member_id": member_id}, channel="store", coupon_codes=[code])
    assert client.post("/v1/orders", json=second, headers=till).status_code == 409
    db.session.remove()  # as a server would (see tests/coupons/test_abuse.py)
    client.post(f"/v1/orders/{first['order_id']}/cancel", headers=till)
    assert code_row(code).uses == 0
    third = order_body({"member_id": member_id}, channel="store", coupon_codes=[code])
    assert client.post("/v1/orders", json=third, headers=till).status_code == 201
