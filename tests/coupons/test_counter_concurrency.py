"""Counters of an offer without a cap stay exact under concurrency on PostgreSQL: striped
rows, taken last in the redemption's transaction (see bench/offer_counters.py for the cost)."""

from __future__ import annotations

from collections import Counter

import pytest

from loyalty.auth import scopes
from loyalty.coupons import operations
from loyalty.coupons.models import CouponOffer
from loyalty.db import db
from tests.coupons import factories as f
from tests.coupons.test_concurrency import in_parallel, post

pytestmark = pytest.mark.postgres
DISCOUNT = 1100


@pytest.fixture
def pos(make):
    make.store("S1")
    return make.api_key(scopes.COUPONS_REDEEM, store_id="S1")


def totals(offer_id):
    db.session.expire_all()
    return operations.offer_totals([db.session.get(CouponOffer, offer_id)])[offer_id]


def test_concurrent_redemptions_and_rollbacks_of_an_uncapped_offer_count_exactly(app, pos):
    offer = f.offer()  # no cap, no budget: counted on striped rows
    codes = f.codes(offer.id, 150)
    first = [
        post(app, "/v1/coupons/redeem", pos, f.body([codes[i]], order_ref=f"first-{i}"))[1]
        for i in range(30)
    ]
    ids = [body["redemptions"][0]["id"] for body in first]

    def work(i):
        if i < 30:
            url = f"/v1/coupons/redemptions/{ids[i]}/rollback"
            return post(app, url, pos, {"reason": "returned"})[0]
        return post(app, "/v1/coupons/redeem", pos, f.body([codes[i]], order_ref=f"o-{i}"))[0]

    statuses = Counter(in_parallel(app, 150, work))
    assert statuses == {200: 30, 201: 120}
    assert totals(offer.id) == (120, 120 * DISCOUNT)
