"""POST /v1/orders, GET /v1/orders/{id}: earning in any channel, idempotent, enrol anywhere."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.auth.tokens import mint_member_qr
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.earning.models import Order, OrderLine
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import LedgerTransaction
from loyalty.members.models import Member, MemberIdentity
from loyalty.members.operations import block_member
from tests.earning.factories import base_rate, order_body, rule
from tests.factories import error_fields, idem
from tests.ledger.invariants import assert_ledger_consistent
from tests.statements import statements

PROBLEM = "application/problem+json"


@pytest.fixture
def pos(make):
    return make.api_key(scopes.ORDERS_WRITE)


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def with_settings(app, monkeypatch, **changes):
    settings = dataclasses.replace(app.extensions["omniloyal.settings"], **changes)
    monkeypatch.setitem(app.extensions, "omniloyal.settings", settings)


def test_an_order_earns_points_with_a_breakdown_per_rule(client, make, pos):
    member = make.member()
    base_rate(points=1, per_minor=100)
    rule(name="2x shoes", kind="multiplier", categories=["shoes"], multiplier_pct=200)
    body = order_body({"member_id": member.id}, ("A", "shoes", 2, 2_500), ("B", "bags", 1, 999))
    response = client.post("/v1/orders", json=body, headers=pos)
    assert response.status_code == 201, response.json
    data = response.json
    assert data["points_earned"] == 50 + 9 + 50
    assert {(e["kind"], e["points"]) for e in data["breakdown"]} == {
        ("base_rate", 59),
        ("multiplier", 50),
    }
    assert data["order_id"] == body["order_id"] and data["member_id"] == member.id
    assert (data["subtotal_minor"], data["total_minor"], data["status"]) == (5_999, 5_999, "posted")
    assert data["pending_until"] is None and data["member_enrolled"] is False
    assert ledger.member_balance(member.id).available == 109
    assert count(OrderLine) == 2
    assert_ledger_consistent()


def test_posting_the_same_order_again_returns_the_first_result_without_a_second_effect(
    client, make, pos
):
    member = make.member()
    base_rate()
    body = order_body({"member_id": member.id})
    first = client.post("/v1/orders", json=body, headers=pos)
    again = client.post("/v1/orders", json=body, headers=pos)
    # A repeat by order id answers like a replay by Idempotency-Key: the first status.
    assert (first.status_code, again.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert ledger.member_balance(member.id).balance == 100
    assert count(LedgerTransaction) == 1 and count(Order) == 1


def test_totals_sent_by_the_till_are_checked_against_the_lines(client, make, pos):
    member = make.member()
    body = order_body(
        {"member_id": member.id},
        ("A", None, 2, 1_250),
        ("B", None, 1, 500),
        subtotal_minor=3_000,
        total_minor=3_000,
    )
    response = client.post("/v1/orders", json=body, headers=pos)
    assert response.status_code == 201 and response.json["total_minor"] == 3_000


def test_a_retry_may_name_the_member_another_way(client, make, pos):
    member = make.member(phone="+33612345678")
    body = order_body({"member_id": member.id})
    assert client.post("/v1/orders", json=body, headers=pos).status_code == 201
    retry = {**body, "member": {"phone": "+33 6 12 34 56 78"}}
    assert client.post("/v1/orders", json=retry, headers=pos).status_code == 201


def test_the_same_order_id_with_other_content_is_a_conflict(client, make, pos):
    member = make.member()
    body = order_body({"member_id": member.id})
    client.post("/v1/orders", json=body, headers=pos)
    changed = {**body, "lines": [{**body["lines"][0], "quantity": 2}]}
    response = client.post("/v1/orders", json=changed, headers=pos)
    assert response.status_code == 409 and response.mimetype == PROBLEM
    assert response.json["type"].endswith("/order-id-reused")


def test_an_idempotency_key_replays_the_first_response(client, make, pos):
    member = make.member()
    base_rate()
    headers = idem(pos, "till-7-42")
    first = client.post("/v1/orders", json=order_body({"member_id": member.id}), headers=headers)
    replay = client.post(
        "/v1/orders",
        json=order_body({"member_id": member.id}, order_id=first.json["order_id"]),
        headers=headers,
    )
    assert replay.status_code == 201 and replay.json == first.json
    assert replay.headers.get("Idempotent-Replayed") == "true"


def test_order_ids_are_scoped_to_the_posting_client(client, make):
    member = make.member()
    web, other = make.api_key(scopes.ORDERS_WRITE), make.api_key(scopes.ORDERS_WRITE)
    body = order_body({"member_id": member.id}, order_id="SAME-1")
    assert client.post("/v1/orders", json=body, headers=web).status_code == 201
    assert client.post("/v1/orders", json=body, headers=other).status_code == 201
    assert client.get("/v1/orders/SAME-1", headers=web).json["order_id"] == "SAME-1"
    assert client.get("/v1/orders/NOPE", headers=web).status_code == 404


def test_another_clients_order_is_not_found(client, make, pos):
    member = make.member()
    client.post(
        "/v1/orders", json=order_body({"member_id": member.id}, order_id="MINE"), headers=pos
    )
    stranger = make.api_key(scopes.ORDERS_WRITE)
    for method, url in [
        ("GET", "/v1/orders/MINE"),
        ("POST", "/v1/orders/MINE/cancel"),
        ("POST", "/v1/orders/MINE/refunds"),
    ]:
        body = {"refund_id": "r", "amount_minor": 1} if url.endswith("refunds") else None
        response = client.open(url, method=method, json=body, headers=stranger)
        assert response.status_code == 404, url
        assert response.mimetype == PROBLEM


def test_enrol_anywhere_creates_the_member_on_their_first_order(client, make, pos):
    base_rate()
    body = order_body({"phone": "+44 7911 123456"})
    response = client.post("/v1/orders", json=body, headers=pos)
    assert response.status_code == 201
    member_id = response.json["member_id"]
    assert response.json["member_enrolled"] is True
    assert ledger.member_balance(member_id).available == 100
    second = client.post("/v1/orders", json=order_body({"phone": "+447911123456"}), headers=pos)
    assert second.json["member_id"] == member_id and second.json["member_enrolled"] is False
    assert count(Member) == 1


def test_members_can_be_named_by_qr_token_member_token_email_and_card(client, make, pos):
    member = make.member(email="ana@example.com")
    qr = mint_member_qr(member.id, now=utcnow()).token
    token = make.member_token(member.id)["Authorization"].removeprefix("Bearer ")
    for reference in ({"qr_token": qr}, {"member_token": token}, {"email": "ANA@example.com "}):
        response = client.post("/v1/orders", json=order_body(reference), headers=pos)
        assert response.status_code == 201 and response.json["member_id"] == member.id
    card = client.post("/v1/orders", json=order_body({"card": "LC 0000 1111"}), headers=pos)
    assert card.json["member_id"] != member.id and card.json["member_enrolled"] is True


def test_a_forged_qr_token_or_unknown_member_id_is_refused(client, make, pos):
    for reference in ({"qr_token": "omq_forged"}, {"member_id": 999_999}):
        response = client.post("/v1/orders", json=order_body(reference), headers=pos)
        assert response.status_code == 422 and response.mimetype == PROBLEM
    assert count(Order) == 0


def test_store_orders_need_a_known_store(client, make, pos):
    member = make.member()
    no_store = client.post(
        "/v1/orders", json=order_body({"member_id": member.id}, channel="store"), headers=pos
    )
    assert no_store.status_code == 422
    unknown = client.post(
        "/v1/orders",
        json=order_body({"member_id": member.id}, channel="store", store_id="NOWHERE"),
        headers=pos,
    )
    assert unknown.status_code == 422 and list(error_fields(unknown.json)) == ["store_id"]


def test_a_store_key_posts_for_its_own_store_by_default_and_never_for_another(client, make):
    make.store("PAR1")
    make.store("LYO1")
    member = make.member()
    till = make.api_key(scopes.ORDERS_WRITE, store_id="PAR1")
    own = client.post(
        "/v1/orders", json=order_body({"member_id": member.id}, channel="store"), headers=till
    )
    assert own.status_code == 201 and own.json["store_id"] == "PAR1"
    other = client.post(
        "/v1/orders",
        json=order_body({"member_id": member.id}, channel="store", store_id="LYO1"),
        headers=till,
    )
    assert other.status_code == 403 and other.mimetype == PROBLEM


def test_a_store_key_sees_its_stores_orders_from_other_clients_but_not_other_stores(client, make):
    make.store("PAR1")
    make.store("LYO1")
    member = make.member()
    hq = make.api_key(scopes.ORDERS_WRITE)
    for order_id, store in (("P-1", "PAR1"), ("L-1", "LYO1")):
        client.post(
            "/v1/orders",
            json=order_body(
                {"member_id": member.id}, channel="store", store_id=store, order_id=order_id
            ),
            headers=hq,
        )
    till = make.api_key(scopes.ORDERS_WRITE, store_id="PAR1")
    assert client.get("/v1/orders/P-1", headers=till).status_code == 200
    assert client.get("/v1/orders/L-1", headers=till).status_code == 404


def test_store_and_region_promotions_apply_in_their_stores(client, make, pos):
    make.store("PAR1", region="north")
    make.store("MRS1", region="south")
    member = make.member()
    base_rate(points=2, channels=["store"])
    now = utcnow()
    rule(
        name="double north",
        kind="promotion",
        multiplier_pct=200,
        regions=["north"],
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=1),
    )
    north = client.post(
        "/v1/orders",
        json=order_body({"member_id": member.id}, channel="store", store_id="PAR1"),
        headers=pos,
    )
    south = client.post(
        "/v1/orders",
        json=order_body({"member_id": member.id}, channel="store", store_id="MRS1"),
        headers=pos,
    )
    assert (north.json["points_earned"], south.json["points_earned"]) == (400, 200)


def test_the_tier_multiplier_applies_to_the_members_tier(client, make, pos):
    from loyalty.tiers import operations as tiers

    gold = tiers.create_tier(
        {"code": "gold", "name": "Gold", "rank": 1, "threshold": 10**9, "earn_multiplier_pct": 150},
        now=utcnow(),
    )
    member = make.member()
    db.session.get(Member, member.id).tier_id = gold.id
    db.session.commit()
    base_rate()
    response = client.post("/v1/orders", json=order_body({"member_id": member.id}), headers=pos)
    assert response.json["points_earned"] == 150
    assert {"kind": "tier", "name": "gold", "points": 50, "rule_id": None} in response.json[
        "breakdown"
    ]


def test_points_stay_pending_for_the_return_window(app, client, make, pos, monkeypatch):
    with_settings(app, monkeypatch, pending_days=14)
    member = make.member()
    base_rate()
    occurred = utcnow() - timedelta(days=1)
    response = client.post(
        "/v1/orders", json=order_body({"member_id": member.id}, occurred_at=occurred), headers=pos
    )
    assert response.json["pending_until"].startswith(
        (occurred + timedelta(days=14)).date().isoformat()
    )
    balance = ledger.member_balance(member.id)
    assert (balance.pending, balance.available) == (100, 0)
    # The ledger's release job makes them available once the window has passed.
    ledger.release_pending_points(occurred + timedelta(days=13))
    assert ledger.member_balance(member.id).pending == 100
    ledger.release_pending_points(occurred + timedelta(days=14, seconds=1))
    db.session.commit()
    balance = ledger.member_balance(member.id)
    assert (balance.pending, balance.available) == (0, 100)


def test_an_order_older_than_the_return_window_earns_available_points(
    app, client, make, pos, monkeypatch
):
    with_settings(app, monkeypatch, pending_days=14)
    member = make.member()
    base_rate()
    old = utcnow() - timedelta(days=20)
    response = client.post(
        "/v1/orders", json=order_body({"member_id": member.id}, occurred_at=old), headers=pos
    )
    assert response.json["pending_until"] is None
    assert ledger.member_balance(member.id).available == 100


def test_a_blocked_member_earns_nothing(client, make, pos):
    member = make.member()
    db.session.get(Member, member.id).status = "blocked"
    db.session.commit()
    response = client.post("/v1/orders", json=order_body({"member_id": member.id}), headers=pos)
    assert response.status_code == 409 and count(Order) == 0


def test_an_order_with_a_coupon_that_cannot_be_redeemed_is_refused_whole(client, make, pos):
    member = make.member()
    response = client.post(
        "/v1/orders",
        json=order_body({"member_id": member.id}, coupon_codes=["NOPE-NOPE"]),
        headers=pos,
    )
    assert 400 <= response.status_code < 500 and response.mimetype == PROBLEM
    assert count(Order) == 0 and count(OrderLine) == 0 and count(LedgerTransaction) == 0


# --- bad input ------------------------------------------------------------------------------


def _nothing_written(members_before: int) -> None:
    assert count(Order) == 0 and count(OrderLine) == 0 and count(LedgerTransaction) == 0
    assert count(Member) == members_before and count(MemberIdentity) == members_before


@pytest.mark.parametrize(
    "change",
    [
        {"lines": [{"sku": "A", "quantity": "2", "unit_price_minor": 100}]},
        {"lines": [{"sku": "A", "quantity": 0, "unit_price_minor": 100}]},
        {"lines": [{"sku": "A", "quantity": -1, "unit_price_minor": 100}]},
        {"lines": [{"sku": "A", "quantity": 10**9, "unit_price_minor": 100}]},
        {"lines": [{"sku": "A", "quantity": 1, "unit_price_minor": -5}]},
        {"lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 10**15}]},
        {"lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 1.5}]},
        {"lines": [{"sku": "A", "quantity": 100_000, "unit_price_minor": 10**10}] * 20},
        {"lines": []},
        {"subtotal_minor": 9_999},
        {"total_minor": 9_999},
        {"total_minor": 10_001},
        {"currency": "XXX"},
        {"currency": "eur"},
        {"channel": "carrier-pigeon"},
        {"member": {"phone": "12345"}},
        {"member": {"phone": "+33612345678", "member_id": 1}},
        {"member": {}},
        {"order_id": "a/b"},
        {"order_id": ""},
        {"occurred_at": "2026-01-01T10:00:00"},
        {"occurred_at": "2999-01-01T10:00:00+00:00"},
        {"unexpected": True},
        {"lines": [{"sku": "A\u0000", "quantity": 1, "unit_price_minor": 1, "colour": "red"}]},
    ],
)
def test_bad_orders_get_a_problem_and_nothing_is_written(client, make, pos, change):
    member = make.member()
    body = {**order_body({"phone": "+33612345678"}), **change}
    response = client.post("/v1/orders", json=body, headers=pos)
    assert 400 <= response.status_code < 500, response.json
    assert response.status_code in (400, 409, 422)
    assert response.mimetype == PROBLEM
    _nothing_written(1)
    assert member.id


def test_malformed_json_and_oversized_bodies_are_refused(app, client, make, pos):
    response = client.post(
        "/v1/orders", data="{not json", content_type="application/json", headers=pos
    )
    assert response.status_code == 400 and response.mimetype == PROBLEM
    huge = "x" * (app.extensions["omniloyal.settings"].max_body_bytes + 1)
    response = client.post("/v1/orders", data=huge, content_type="application/json", headers=pos)
    assert response.status_code == 413 and response.mimetype == PROBLEM
    _nothing_written(0)


def test_orders_need_credentials_and_the_orders_scope(client, make):
    body = order_body({"phone": "+33612345678"})
    assert client.post("/v1/orders", json=body).status_code == 401
    reader = make.api_key(scopes.MEMBERS_READ)
    response = client.post("/v1/orders", json=body, headers=reader)
    assert response.status_code == 403 and response.mimetype == PROBLEM
    member = make.member()
    response = client.post("/v1/orders", json=body, headers=make.member_token(member.id))
    assert response.status_code == 403
    assert client.get("/v1/orders/X").status_code == 401
    assert client.get("/v1/orders/X", headers=reader).status_code == 403
    _nothing_written(1)


def test_an_order_older_than_the_configured_age_is_a_422_naming_occurred_at(
    app, client, make, pos, monkeypatch
):
    with_settings(app, monkeypatch, max_order_age_days=30)
    member = make.member()
    base_rate()
    too_old = utcnow() - timedelta(days=31)
    response = client.post(
        "/v1/orders",
        json=order_body({"member_id": member.id}, order_id="OLD-1", occurred_at=too_old),
        headers=pos,
    )
    assert response.status_code == 422
    assert response.content_type == PROBLEM
    assert "occurred_at" in error_fields(response.json)
    assert count(Order) == 0
    recent = utcnow() - timedelta(days=29)
    accepted = client.post(
        "/v1/orders",
        json=order_body({"member_id": member.id}, order_id="OK-1", occurred_at=recent),
        headers=pos,
    )
    assert accepted.status_code == 201


def test_a_retry_of_an_accepted_order_replays_even_once_it_is_older_than_the_bound(
    app, client, make, pos, monkeypatch
):
    member = make.member()
    base_rate()
    body = order_body({"member_id": member.id}, occurred_at=utcnow() - timedelta(days=10))
    assert client.post("/v1/orders", json=body, headers=pos).status_code == 201
    with_settings(app, monkeypatch, max_order_age_days=5)  # as if the retry came much later
    again = client.post("/v1/orders", json=body, headers=pos)
    assert again.status_code == 201, again.json
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_retry_replays_even_once_its_member_is_blocked(app, client, make, pos):
    member = make.member()
    base_rate()
    body = order_body({"member_id": member.id})
    first = client.post("/v1/orders", json=body, headers=pos)
    assert first.status_code == 201
    block_member(member.id, reason="fraud check", now=utcnow(), actor="test")
    db.session.commit()
    again = client.post("/v1/orders", json=body, headers=pos)
    assert again.status_code == 201, again.json
    assert again.headers["Idempotent-Replayed"] == "true" and again.json == first.json
    other = client.post("/v1/orders", json=order_body({"member_id": member.id}), headers=pos)
    assert other.status_code == 409 and other.json["type"].endswith("member-not-active")


def test_an_order_naming_its_member_by_id_is_not_looked_up_before_its_insert(client, make, pos):
    """The till's usual order: its unique key finds a repeat, so no SELECT by order id
    precedes it (one round trip less); an order naming an identity still looks first."""
    member = make.member()
    by_id = order_body({"member_id": member.id})
    with statements() as sent:
        assert client.post("/v1/orders", json=by_id, headers=pos).status_code == 201
    assert not [s for s in sent if s.lstrip().startswith("SELECT orders.id")]
    by_phone = order_body({"phone": "+4915112345678"})
    with statements() as sent:
        assert client.post("/v1/orders", json=by_phone, headers=pos).status_code == 201
    assert [s for s in sent if s.lstrip().startswith("SELECT orders.id")]


def test_the_order_age_bound_is_in_the_api_schema(client):
    spec = client.get("/openapi.json").json
    described = spec["components"]["schemas"]["OrderRequest"]["properties"]["occurred_at"]
    assert "OMNILOYAL_MAX_ORDER_AGE_DAYS" in described["description"]


@pytest.mark.postgres
def test_on_postgresql_an_orders_lines_go_out_with_its_final_values_and_event(client, make, pos):
    """One statement writes the lines (array-fed), the order's final values and
    `order.posted`: eight statements for an order naming its member by id, sent with an
    Idempotency-Key, BEGIN and COMMIT aside, once the per-process caches hold the key,
    store and rules (docs/architecture.md, "Per-request cost")."""
    member = make.member()
    base_rate()
    first = client.post("/v1/orders", json=order_body({"member_id": member.id}), headers=pos)
    assert first.status_code == 201
    body = order_body({"member_id": member.id})
    with statements() as sent:
        response = client.post("/v1/orders", json=body, headers=idem(pos))
    assert response.status_code == 201
    [finishing] = [s for s in sent if "INSERT INTO order_lines" in s]
    assert "UPDATE orders" in finishing and "INSERT INTO outbox_events" in finishing
    assert len(sent) == 8
    db.session.expire_all()
    stored = db.session.scalars(
        sa.select(OrderLine)
        .where(OrderLine.order_id == response.json["id"])
        .order_by(OrderLine.index)
    ).all()
    assert [(line.sku, line.quantity, line.unit_price_minor) for line in stored] == [
        (line["sku"], line["quantity"], line["unit_price_minor"]) for line in body["lines"]
    ]
