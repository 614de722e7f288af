"""With Redis down the coupon guess lockout fails closed on every path that takes codes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from loyalty.app import create_app
from loyalty.auth import scopes
from loyalty.db import db
from tests.coupons import factories as f
from tests.earning.factories import order_body
from tests.factories import idem
from tests.redis_server import RedisServer, redis_server


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisServer]:
    with redis_server(str(tmp_path)) as server:
        yield server


@pytest.fixture
def app_on_own_redis(app: Flask, own_redis: RedisServer) -> Iterator[Flask]:
    """The service on the test database, with a Redis this test can stop."""
    settings = app.extensions["omniloyal.settings"]
    other = create_app(
        {
            "database_url": settings.database_url,
            "redis_url": own_redis.url,
            "secret_key": settings.secret_key,
            "run_embedded_worker": False,
        }
    )
    other.config["TESTING"] = True
    yield other
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def _problem_with_retry_after(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.json
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["type"].endswith("/service-unavailable")
    assert int(response.headers["Retry-After"]) > 0


def test_validate_redeem_and_orders_with_codes_answer_503_while_redis_is_down(
    app_on_own_redis, own_redis, make
):
    make.store("S1")
    till = make.api_key(scopes.COUPONS_REDEEM, scopes.ORDERS_WRITE, store_id="S1")
    member_id = make.member().id
    member = make.member_token(member_id)
    [code] = f.codes(f.offer().id)
    db.session.remove()  # end this test's transaction: the other app writes to the database
    client = app_on_own_redis.test_client()
    assert client.post("/v1/coupons/validate", json=f.body([code]), headers=till).status_code == 200

    own_redis.stop()

    _problem_with_retry_after(
        client.post("/v1/coupons/validate", json=f.body([code]), headers=till)
    )
    _problem_with_retry_after(
        client.post("/v1/coupons/redeem", json=f.body([code], order_ref="o"), headers=idem(till))
    )
    with_code = order_body({"member_id": member_id}, channel="store", coupon_codes=[code])
    _problem_with_retry_after(client.post("/v1/orders", json=with_code, headers=till))
    _problem_with_retry_after(
        client.post("/v1/me/coupons/validate", json=f.body([code], channel="app"), headers=member)
    )
    # Orders without codes don't need the lockout (and the request rate limiter, whose
    # counters were in this Redis too, falls back to per-process memory).
    plain = order_body({"member_id": member_id}, channel="store")
    assert client.post("/v1/orders", json=plain, headers=till).status_code == 201
    assert f.code_row(code).uses == 0


def test_an_order_with_codes_posted_again_while_redis_is_down_replays(
    app_on_own_redis, own_redis, make
):
    make.store("S1")
    till = make.api_key(scopes.ORDERS_WRITE, store_id="S1")
    member_id = make.member().id
    first_code, second_code = f.codes(f.offer().id, 2)
    by_id = order_body({"member_id": member_id}, channel="store", coupon_codes=[first_code])
    by_key = order_body({"member_id": member_id}, channel="store", coupon_codes=[second_code])
    key = idem(till)
    db.session.remove()
    client = app_on_own_redis.test_client()
    first = client.post("/v1/orders", json=by_id, headers=till)
    assert first.status_code == 201, first.json
    second = client.post("/v1/orders", json=by_key, headers=key)
    assert second.status_code == 201, second.json

    own_redis.stop()

    again = client.post("/v1/orders", json=by_id, headers=till)
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert again.json["points_earned"] == first.json["points_earned"]
    replay = client.post("/v1/orders", json=by_key, headers=key)
    assert (replay.status_code, replay.json) == (201, second.json)
    fresh = order_body({"member_id": member_id}, channel="store", coupon_codes=[first_code])
    _problem_with_retry_after(client.post("/v1/orders", json=fresh, headers=till))
