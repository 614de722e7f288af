"""Repeated guesses lock the key and the store out for a while; honest failures don't."""

from __future__ import annotations

import pytest

from loyalty.auth import scopes
from loyalty.db import db
from tests.coupons import factories as f
from tests.earning.factories import order_body
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


def test_a_token_minted_before_a_merge_shares_the_persons_guess_count(client, make, low_limit):
    from loyalty.clock import utcnow
    from loyalty.members.merge import merge_members

    survivor, merged = make.member(), make.member()
    old_token = make.member_token(merged.id)  # still authenticates after the merge
    merge_members(survivor.id, merged.id, reason=None, now=utcnow(), actor="test")
    db.session.commit()
    new_token = make.member_token(survivor.id)

    def guess(n: int, token: dict[str, str]) -> int:
        body = f.body([f"P{n:010d}"], channel="app")
        return client.post("/v1/me/coupons/validate", json=body, headers=token).status_code

    assert [guess(n, old_token) for n in range(3)] == [200] * 3
    assert [guess(n, new_token) for n in range(3, 5)] == [200] * 2
    assert guess(5, new_token) == 429  # five guesses by one person, not three and two
    assert guess(6, old_token) == 429


def test_orders_count_unknown_codes_and_are_locked_out_like_the_coupon_routes(client, make):
    # Defaults (20 failures): before the fix 30 orders of 10 unknown codes never met a 429
    # and the right code then worked.
    make.store("S1")
    till = make.api_key(scopes.ORDERS_WRITE, store_id="S1")
    member_id = make.member().id
    [real] = f.codes(f.offer().id)
    statuses = []
    for n in range(30):
        guesses = [f"G{n:02d}{i:08d}" for i in range(10)]
        body = order_body({"member_id": member_id}, channel="store", coupon_codes=guesses)
        statuses.append(client.post("/v1/orders", json=body, headers=till).status_code)
        db.session.remove()  # a server gives each request its own session; the test client
        # reuses the test's app context, and SQLite hands a rolled-back order's id out again
    assert statuses[:2] == [422, 422]
    assert set(statuses[2:]) == {429}
    right = client.post("/v1/orders", json=order_body({"member_id": member_id}, channel="store",
                        coupon_codes=[real]), headers=till)  # fmt: skip
    assert right.status_code == 429
    assert right.json["type"].endswith("/rate-limited") and int(right.headers["Retry-After"]) > 0
    assert f.code_row(real).uses == 0


def test_guesses_through_orders_lock_the_coupon_routes_too(client, make, low_limit):
    make.store("S1")
    key = make.api_key(scopes.ORDERS_WRITE, scopes.COUPONS_REDEEM, store_id="S1")
    body = order_body({"member_id": make.member().id}, channel="store",
                      coupon_codes=[f"G{n:010d}" for n in range(5)])  # fmt: skip
    assert client.post("/v1/orders", json=body, headers=key).status_code == 422
    response = client.post("/v1/coupons/validate", json=f.body(["ANY00000000"]), headers=key)
    assert response.status_code == 429


def test_an_unbound_key_naming_a_store_locks_out_only_itself(client, make, low_limit):
    make.store("S1")
    web = make.api_key(scopes.COUPONS_REDEEM, scopes.ORDERS_WRITE)  # not bound to a store
    till = make.api_key(scopes.COUPONS_REDEEM, scopes.ORDERS_WRITE, store_id="S1")
    [real] = f.codes(f.offer().id)
    guesses = f.body([f"G{n:010d}" for n in range(5)], store_id="S1")
    assert client.post("/v1/coupons/validate", json=guesses, headers=web).status_code == 200
    assert client.post("/v1/coupons/validate", json=f.body([real], store_id="S1"),
                       headers=web).status_code == 429  # fmt: skip
    order = order_body({"member_id": make.member().id}, channel="store", store_id="S1",
                       coupon_codes=[f"H{n:010d}" for n in range(5)])  # fmt: skip
    assert client.post("/v1/orders", json=order, headers=web).status_code == 429
    # The store's own tills never made a failed guess: they are not locked out.
    assert client.post("/v1/coupons/validate", json=f.body([real]), headers=till).status_code == 200
    redeemed = client.post("/v1/coupons/redeem", json=f.body([real], order_ref="o"),
                           headers=idem(till))  # fmt: skip
    assert redeemed.status_code == 201


def test_an_order_posted_again_while_its_caller_is_locked_out_replays(client, make, low_limit):
    make.store("S1")
    till = make.api_key(scopes.ORDERS_WRITE, scopes.COUPONS_REDEEM, store_id="S1")
    member_id = make.member().id
    first_code, second_code = f.codes(f.offer().id, 2)
    by_id = order_body({"member_id": member_id}, channel="store", coupon_codes=[first_code])
    by_key = order_body({"member_id": member_id}, channel="store", coupon_codes=[second_code])
    key = idem(till)
    assert client.post("/v1/orders", json=by_id, headers=till).status_code == 201
    first = client.post("/v1/orders", json=by_key, headers=key)
    assert first.status_code == 201
    for n in range(5):
        client.post("/v1/coupons/validate", json=f.body([f"GUESS{n:08d}"]), headers=till)
    db.session.remove()

    again = client.post("/v1/orders", json=by_id, headers=till)
    assert again.status_code == 201, again.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (
        again.json["coupons"]
        == client.get(f"/v1/orders/{by_id['order_id']}", headers=till).json["coupons"]
    )
    replay = client.post("/v1/orders", json=by_key, headers=key)
    assert (replay.status_code, replay.json) == (201, first.json)
    # Anything new with codes is still refused.
    fresh = order_body({"member_id": member_id}, channel="store", coupon_codes=[first_code])
    assert client.post("/v1/orders", json=fresh, headers=till).status_code == 429
