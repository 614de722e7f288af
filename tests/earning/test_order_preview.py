"""POST /v1/orders/preview: the points a basket would earn, rule by rule, and what its
codes would take off, without writing anything; the order posted after agrees."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.db import db
from tests.coupons.factories import code_row, offer, shared
from tests.earning.factories import base_rate, order_body, rule
from tests.factories import idem

pytestmark = pytest.mark.usefixtures("app")


@pytest.fixture
def pos(make):
    return make.api_key(scopes.ORDERS_WRITE, scopes.COUPONS_REDEEM)


def every_row_count() -> dict[str, int]:
    """Rows in every table (idempotency keys and the outbox included)."""
    return {
        table.name: db.session.scalar(sa.select(sa.func.count()).select_from(table))
        for table in db.metadata.sorted_tables
    }


def preview_body(order: dict) -> dict:
    return {k: v for k, v in order.items() if k != "order_id"}


def test_a_preview_says_what_the_order_will_earn_and_writes_nothing(client, make, pos):
    member = make.member()
    base_rate(points=1, per_minor=100)
    rule(name="2x shoes", kind="multiplier", categories=["shoes"], multiplier_pct=200)
    code = shared(offer(percent_bp=1000, stacking="stackable").id, "TENOFF")
    order = order_body(
        {"member_id": member.id},
        ("A", "shoes", 2, 2_500),
        ("B", "bags", 1, 1_000),
        coupon_codes=[code],
    )
    db.session.commit()
    before = every_row_count()
    uses_before = code_row(code).uses

    preview = client.post("/v1/orders/preview", json=preview_body(order), headers=pos)
    assert preview.status_code == 200, preview.json
    assert every_row_count() == before  # no order, hold, redemption, counter, event, key
    assert code_row(code).uses == uses_before
    data = preview.json
    assert (data["subtotal_minor"], data["discount_minor"], data["total_minor"]) == (
        6_000,
        600,
        5_400,
    )
    assert data["coupons"]["results"][0]["applies"] is True
    assert {e["kind"] for e in data["breakdown"]} == {"base_rate", "multiplier"}

    posted = client.post("/v1/orders", json=order, headers=idem(pos))
    assert posted.status_code == 201, posted.json
    assert posted.json["points_earned"] == data["points"]
    assert posted.json["breakdown"] == data["breakdown"]
    assert posted.json["discount_minor"] == data["discount_minor"]


def test_a_preview_for_an_unknown_identity_enrols_nobody(client, pos):
    base_rate(points=1, per_minor=100)
    before = every_row_count()
    body = preview_body(order_body({"email": "nobody-yet@example.com"}, ("A", None, 1, 5_000)))
    preview = client.post("/v1/orders/preview", json=body, headers=pos)
    assert preview.status_code == 200, preview.json
    assert (preview.json["member_known"], preview.json["member_id"]) == (False, None)
    assert preview.json["points"] == 50
    assert every_row_count() == before


def test_a_preview_shows_codes_that_do_not_apply_with_their_reasons(client, pos):
    body = preview_body(order_body({"email": "x@example.com"}, coupon_codes=["NOSUCHCODE123"]))
    preview = client.post("/v1/orders/preview", json=body, headers=pos)
    assert preview.status_code == 200, preview.json
    [result] = preview.json["coupons"]["results"]
    assert result["applies"] is False and result["reasons"]
    assert preview.json["discount_minor"] == 0


def test_a_preview_takes_no_qr_token_and_needs_no_idempotency_key(client, pos):
    body = preview_body(order_body({"qr_token": "abc"}))
    refused = client.post("/v1/orders/preview", json=body, headers=pos)
    assert refused.status_code == 422
