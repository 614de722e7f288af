"""Bad coupon input found while fuzzing the API (tests/test_api_fuzz.py) answered with a 500."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.coupons.models import CouponRedemption
from loyalty.db import db
from tests.coupons import factories as coupons
from tests.factories import error_fields, idem

PROBLEM = "application/problem+json"
# The per-line maxima (the same as an order's: loyalty.schemas.MAX_UNIT_PRICE).
HUGE_LINE = {"sku": "X", "category": "c", "quantity": 100_000, "unit_price_minor": 10**10}


@pytest.mark.parametrize(
    "path", ["/v1/coupons/validate", "/v1/coupons/redeem", "/v1/coupons/holds"]
)
def test_a_basket_whose_total_exceeds_the_money_range_is_a_422(client, make, path):
    # 100 lines at the per-line maximum: a 100 % discount of 10^20 overflowed BIGINT.
    make.store("S1")
    offer = coupons.offer(percent_bp=10_000)
    [code] = coupons.codes(offer.id)
    body = coupons.body([code], lines=[HUGE_LINE] * 100, store_id="S1", order_ref="R-1")
    if path == "/v1/coupons/validate":
        del body["order_ref"]
    response = client.post(path, json=body, headers=idem(make.api_key()))
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert "lines" in error_fields(response.json)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CouponRedemption)) == 0
