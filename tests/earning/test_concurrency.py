"""Orders and refunds under real concurrency on PostgreSQL (threads, own connections)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.db import db
from loyalty.earning.models import Order, Refund
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import LedgerTransaction
from loyalty.members.models import Member
from tests.concurrency import in_threads
from tests.earning.factories import base_rate, order_body
from tests.ledger.invariants import assert_ledger_consistent

pytestmark = pytest.mark.postgres


def _count(model, *where) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_the_same_order_posted_by_ten_threads_at_once_earns_once(app, make):
    member_id = make.member().id
    base_rate()
    headers = make.api_key(scopes.ORDERS_WRITE)
    body = order_body({"member_id": member_id}, ("A", "shoes", 2, 5_000), order_id="RACE-1")

    def post(_):
        response = app.test_client().post("/v1/orders", json=body, headers=headers)
        return response.status_code, response.json, "Idempotent-Replayed" in response.headers

    results = in_threads(app, 10, post)
    assert [code for code, _, _ in results] == [201] * 10
    assert sorted(replayed for _, _, replayed in results) == [False] + [True] * 9
    bodies = [data for _, data, _ in results]
    assert all(data == bodies[0] for data in bodies)
    assert bodies[0]["points_earned"] == 100
    assert _count(Order) == 1 and _count(LedgerTransaction) == 1
    assert ledger.member_balance(member_id).balance == 100
    assert_ledger_consistent()


def test_twenty_different_orders_for_one_member_at_once_each_earn_exactly_once(app, make):
    """Each order's ledger writes (transaction with its lot, entries with the balance and
    the event) are a statement or two on PostgreSQL; under the member's lock they add up."""
    member_id = make.member().id
    base_rate()
    headers = make.api_key(scopes.ORDERS_WRITE)

    def post(index):
        body = order_body({"member_id": member_id}, ("A", "shoes", 1, 5_000), order_id=f"P-{index}")
        return app.test_client().post("/v1/orders", json=body, headers=headers).status_code

    assert in_threads(app, 20, post) == [201] * 20
    assert _count(Order) == 20 and _count(LedgerTransaction) == 20
    assert ledger.member_balance(member_id).balance == 20 * 50
    assert_ledger_consistent()


def test_twenty_concurrent_first_orders_for_one_new_phone_enrol_one_member(app, make):
    base_rate()
    headers = make.api_key(scopes.ORDERS_WRITE)

    def post(i):
        body = order_body({"phone": "+33 6 98 76 54 32"}, order_id=f"PHONE-{i}")
        response = app.test_client().post("/v1/orders", json=body, headers=headers)
        return (
            response.status_code,
            response.json.get("member_id"),
            response.json.get("member_enrolled"),
        )

    results = in_threads(app, 20, post)
    assert [code for code, _, _ in results] == [201] * 20
    assert len({member for _, member, _ in results}) == 1
    assert sum(1 for _, _, enrolled in results if enrolled) == 1
    assert _count(Member) == 1 and _count(Order) == 20
    assert ledger.member_balance(results[0][1]).balance == 20 * 100
    assert_ledger_consistent()


def test_refunds_racing_on_one_order_never_reverse_more_than_earned(app, make):
    member_id = make.member().id
    base_rate(points=1, per_minor=3)
    headers = make.api_key(scopes.ORDERS_WRITE)
    client = app.test_client()
    order = client.post(
        "/v1/orders",
        json=order_body({"member_id": member_id}, ("A", None, 1, 10_000)),
        headers=headers,
    )
    earned = order.json["points_earned"]
    assert earned == 3_333

    def refund(i):
        response = app.test_client().post(
            "/v1/orders/{}/refunds".format(order.json["order_id"]),
            json={"refund_id": f"R{i}", "amount_minor": 3_000},
            headers=headers,
        )
        return response.status_code, response.json.get("points_reversed")

    results = in_threads(app, 10, refund)
    assert sorted(code for code, _ in results) == [201] * 3 + [422] * 7
    reversed_points = sum(points for code, points in results if code == 201)
    assert reversed_points == 3_333 * 9_000 // 10_000 <= earned
    assert ledger.member_balance(member_id).balance == earned - reversed_points
    # The last 1,000 refunds exactly the rest.
    last = client.post(
        "/v1/orders/{}/refunds".format(order.json["order_id"]),
        json={"refund_id": "LAST", "amount_minor": 1_000},
        headers=headers,
    )
    assert last.json["order_status"] == "refunded"
    assert ledger.member_balance(member_id).balance == 0
    assert_ledger_consistent()


def test_the_same_refund_and_cancel_sent_concurrently_take_effect_once(app, make):
    member_id = make.member().id
    base_rate()
    headers = make.api_key(scopes.ORDERS_WRITE)
    order_id = (
        app.test_client()
        .post(
            "/v1/orders",
            json=order_body({"member_id": member_id}, ("A", None, 1, 10_000)),
            headers=headers,
        )
        .json["order_id"]
    )

    def refund_or_cancel(i):
        client = app.test_client()
        if i % 2:
            response = client.post(
                f"/v1/orders/{order_id}/refunds",
                json={"refund_id": "SAME", "amount_minor": 5_000},
                headers=headers,
            )
        else:
            response = client.post(f"/v1/orders/{order_id}/cancel", headers=headers)
        return response.status_code

    codes = in_threads(app, 10, refund_or_cancel)
    assert set(codes) <= {200, 201, 409}
    assert _count(Refund) <= 1
    assert ledger.member_balance(member_id).balance == 0
    stored = db.session.scalar(sa.select(Order))
    assert (stored.status, stored.points_reversed) == ("cancelled", 100)
    assert_ledger_consistent()
