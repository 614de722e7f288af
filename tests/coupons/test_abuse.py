"""Repeated guesses lock the key and the store out for a while; honest failures don't."""

from __future__ import annotations

import pytest

from loyalty.auth import scopes
from tests.coupons import factories as f
from tests.factories import idem

pytestmark = pytest.mark.usefixtures("app")


@pytest.fixture
def low_limit(app):
    app.config["COUPON_FAILURE_LIMIT"] = 5
    yield
    app.config.pop("COUPON_FAILURE_LIMIT")


def test_repeated_unknown_codes_lock_the_key_out_with_retry_after(client, make, low_limit):
    make.store("S1")
    pos = make.api_key(scopes.COUPONS_REDEEM, store_id="S1")
    [real] = f.codes(f.offer().id)
    for n in range(5):
        response = client.post("/v1/coupons/validate", json=f.body([f"GUESS{n:08d}"]),
                               headers=pos)  # fmt: skip
        assert response.status_code == 200
    locked = client.post("/v1/coupons/redeem", json=f.body([real], order_ref="o"),
                         headers=idem(pos))  # fmt: skip
    assert locked.status_code == 429
    assert locked.json["type"].endswith("/rate-limited")
    assert int(locked.headers["Retry-After"]) > 0
    assert f.code_row(real).uses == 0


def test_the_lockout_covers_every_key_of_the_store(client, make, low_limit):
    make.store("S1")
    first = make.api_key(scopes.COUPONS_REDEEM, store_id="S1")
    second = make.api_key(scopes.COUPONS_REDEEM, store_id="S1")
    client.post("/v1/coupons/validate", json=f.body([f"G{n:010d}" for n in range(5)]),
                headers=first)  # fmt: skip
    response = client.post("/v1/coupons/validate", json=f.body(["ANY00000000"]), headers=second)
    assert response.status_code == 429


def test_used_up_codes_are_not_counted_as_guesses(client, make, low_limit):
    make.store("S1")
    pos = make.api_key(scopes.COUPONS_REDEEM, store_id="S1")
    [code] = f.codes(f.offer().id)
    for n in range(8):
        response = client.post("/v1/coupons/redeem", json=f.body([code], order_ref=f"o{n}"),
                               headers=idem(pos))  # fmt: skip
        assert response.status_code in {201, 409}


def test_a_member_guessing_codes_is_locked_out_too(client, make, low_limit):
    token = make.member_token(make.member().id)
    for n in range(5):
        client.post("/v1/me/coupons/validate", json=f.body([f"M{n:010d}"], channel="app"),
                    headers=token)  # fmt: skip
    response = client.post("/v1/me/coupons/validate", json=f.body(["X0000000000"], channel="app"),
                           headers=token)  # fmt: skip
    assert response.status_code == 429
