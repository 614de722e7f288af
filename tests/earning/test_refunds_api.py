"""Refunds and cancellations reverse points in proportion, by the configured return policy."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.earning.models import Order, Refund
from loyalty.ledger import operations as ledger
from loyalty.ledger.policy import ReturnPolicy
from tests.earning.factories import base_rate, order_body
from tests.ledger.invariants import assert_ledger_consistent

PROBLEM = "application/problem+json"


@pytest.fixture
def pos(make):
    return make.api_key(scopes.ORDERS_WRITE)


def with_settings(app, monkeypatch, **changes):
    settings = dataclasses.replace(app.extensions["omniloyal.settings"], **changes)
    monkeypatch.setitem(app.extensions, "omniloyal.settings", settings)


def post(client, headers, member_id, *lines, **more):
    response = client.post(
        "/v1/orders", json=order_body({"member_id": member_id}, *lines, **more), headers=headers
    )
    assert response.status_code == 201, response.json
    return response.json


def refund(client, headers, order_id, **body):
    return client.post(f"/v1/orders/{order_id}/refunds", json=body, headers=headers)


def test_a_partial_refund_reverses_points_in_proportion(client, make, pos):
    member = make.member()
    base_rate()
    order = post(client, pos, member.id, ("A", None, 3, 3_333))  # 9,999 -> 99 points
    response = refund(client, pos, order["order_id"], refund_id="R1", amount_minor=3_333)
    assert response.status_code == 201, response.json
    data = response.json
    assert data["points_reversed"] == 99 * 3_333 // 9_999 == 33
    assert (data["revoked_available"], data["forgiven"], data["clawed_back"]) == (33, 0, 0)
    assert data["order_status"] == "partially_refunded"
    assert ledger.member_balance(member.id).available == 66


def test_refunds_by_line_add_up_and_a_full_refund_reverses_exactly_everything(client, make, pos):
    member = make.member()
    base_rate(points=1, per_minor=7)
    order = post(client, pos, member.id, ("A", None, 3, 1_001), ("B", None, 1, 2_003))
    earned = order["points_earned"]
    first = refund(
        client, pos, order["order_id"], refund_id="R1", lines=[{"index": 0, "quantity": 1}]
    )
    assert first.json["amount_minor"] == 1_001
    second = refund(
        client,
        pos,
        order["order_id"],
        refund_id="R2",
        lines=[{"index": 0, "quantity": 2}, {"index": 1, "quantity": 1}],
    )
    assert second.json["order_status"] == "refunded"
    reversed_total = first.json["points_reversed"] + second.json["points_reversed"]
    assert reversed_total == earned
    assert ledger.member_balance(member.id).balance == 0
    stored = db.session.scalar(sa.select(Order))
    assert (stored.refunded_minor, stored.points_reversed) == (stored.total_minor, earned)
    assert_ledger_consistent()


def test_a_refund_beyond_the_order_total_is_refused_and_changes_nothing(client, make, pos):
    member = make.member()
    base_rate()
    order = post(client, pos, member.id, ("A", None, 1, 1_000))
    refund(client, pos, order["order_id"], refund_id="R1", amount_minor=600)
    too_much = refund(client, pos, order["order_id"], refund_id="R2", amount_minor=401)
    assert too_much.status_code == 422 and too_much.mimetype == PROBLEM
    assert too_much.json["refundable_minor"] == 400
    too_many = refund(
        client, pos, order["order_id"], refund_id="R3", lines=[{"index": 0, "quantity": 2}]
    )
    assert too_many.status_code == 422
    no_line = refund(
        client, pos, order["order_id"], refund_id="R4", lines=[{"index": 5, "quantity": 1}]
    )
    assert no_line.status_code == 422
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Refund)) == 1
    assert ledger.member_balance(member.id).balance == 4


def test_a_refund_is_idempotent_by_its_refund_id(client, make, pos):
    member = make.member()
    base_rate()
    order = post(client, pos, member.id, ("A", None, 1, 1_000))
    first = refund(client, pos, order["order_id"], refund_id="R1", amount_minor=500)
    again = refund(client, pos, order["order_id"], refund_id="R1", amount_minor=500)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    other = refund(client, pos, order["order_id"], refund_id="R1", amount_minor=501)
    assert other.status_code == 409 and other.json["type"].endswith("/refund-id-reused")
    assert ledger.member_balance(member.id).balance == 5


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # 100 earned, 80 spent: 20 left, the refund takes back 100.
        (
            ReturnPolicy.CAP_AT_ZERO,
            {"revoked_available": 20, "clawed_back": 0, "forgiven": 80, "balance": 0},
        ),
        (
            ReturnPolicy.CLAW_BACK,
            {"revoked_available": 20, "clawed_back": 80, "forgiven": 0, "balance": -80},
        ),
        (
            ReturnPolicy.PENDING_ONLY,
            {"revoked_available": 0, "clawed_back": 0, "forgiven": 100, "balance": 20},
        ),
    ],
)
def test_the_return_policy_decides_what_happens_to_spent_points(
    app, client, make, pos, monkeypatch, policy, expected
):
    with_settings(app, monkeypatch, return_policy=policy)
    member = make.member()
    base_rate()
    order = post(client, pos, member.id, ("A", None, 1, 10_000))
    ledger.burn_points(member.id, 80, ledger.Cause("reward", "r"), now=utcnow(), actor="t")
    db.session.commit()
    data = refund(client, pos, order["order_id"], refund_id="R1", amount_minor=10_000).json
    assert data["policy"] == policy.value and data["points_reversed"] == 100
    for name in ("revoked_available", "clawed_back", "forgiven"):
        assert data[name] == expected[name], name
    assert ledger.member_balance(member.id).balance == expected["balance"]
    assert_ledger_consistent()


def test_a_refund_inside_the_return_window_revokes_pending_points(
    app, client, make, pos, monkeypatch
):
    with_settings(app, monkeypatch, pending_days=30, return_policy=ReturnPolicy.PENDING_ONLY)
    member = make.member()
    base_rate()
    order = post(client, pos, member.id, ("A", None, 2, 5_000))
    data = refund(
        client, pos, order["order_id"], refund_id="R1", lines=[{"index": 0, "quantity": 1}]
    ).json
    assert (data["revoked_pending"], data["revoked_available"], data["forgiven"]) == (50, 0, 0)
    assert ledger.member_balance(member.id).pending == 50


def test_cancelling_reverses_everything_once(client, make, pos):
    member = make.member()
    base_rate()
    order = post(client, pos, member.id, ("A", None, 1, 10_000))
    refund(client, pos, order["order_id"], refund_id="R1", amount_minor=2_500)
    first = client.post(f"/v1/orders/{order['order_id']}/cancel", headers=pos)
    assert first.status_code == 200
    assert first.json["status"] == "cancelled" and first.json["points_reversed"] == 100
    assert first.json["cancellation"]["points_reversed"] == 75
    again = client.post(f"/v1/orders/{order['order_id']}/cancel", headers=pos)
    assert again.status_code == 200 and again.json == first.json
    assert ledger.member_balance(member.id).balance == 0
    late = refund(client, pos, order["order_id"], refund_id="R2", amount_minor=1)
    assert late.status_code == 409 and late.mimetype == PROBLEM
    assert_ledger_consistent()


def test_a_store_key_may_not_refund_another_stores_order(client, make):
    make.store("PAR1")
    make.store("LYO1")
    member = make.member()
    hq = make.api_key(scopes.ORDERS_WRITE, scopes.ADMIN)
    order = post(client, hq, member.id, channel="store", store_id="LYO1")
    till = make.api_key(scopes.ORDERS_WRITE, store_id="PAR1")
    response = refund(client, till, order["order_id"], refund_id="R", amount_minor=1)
    assert response.status_code == 404
    online = post(client, hq, member.id)
    # An online order of another client is still not this till's.
    assert (
        refund(client, till, online["order_id"], refund_id="R", amount_minor=1).status_code == 404
    )


@pytest.mark.parametrize(
    "body",
    [
        {"refund_id": "R"},
        {"refund_id": "R", "amount_minor": 0},
        {"refund_id": "R", "amount_minor": -1},
        {"refund_id": "R", "amount_minor": "10"},
        {"refund_id": "R", "amount_minor": 10, "lines": [{"index": 0, "quantity": 1}]},
        {"refund_id": "R", "lines": [{"index": 0, "quantity": 0}]},
        {"refund_id": "R", "lines": [{"index": 0, "quantity": 1}, {"index": 0, "quantity": 1}]},
        {"amount_minor": 10},
    ],
)
def test_bad_refunds_are_refused_with_a_problem(client, make, pos, body):
    member = make.member()
    base_rate()
    order = post(client, pos, member.id)
    response = refund(client, pos, order["order_id"], **body)
    assert response.status_code in (400, 422) and response.mimetype == PROBLEM
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Refund)) == 0


def test_refunds_and_cancels_need_the_orders_scope(client, make, pos):
    member = make.member()
    order = post(client, pos, member.id)
    reader = make.api_key(scopes.MEMBERS_READ)
    url = f"/v1/orders/{order['order_id']}"
    assert refund(client, {}, order["order_id"], refund_id="R", amount_minor=1).status_code == 401
    assert (
        refund(client, reader, order["order_id"], refund_id="R", amount_minor=1).status_code == 403
    )
    assert client.post(f"{url}/cancel").status_code == 401
    assert client.post(f"{url}/cancel", headers=reader).status_code == 403
