"""Request rate limits: per IP, per caller, tighter on member tokens and identify.

Each test builds the service with small limits of its own (the suite's app has limits it
never reaches); counters live in Redis on the PostgreSQL run and in memory embedded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from loyalty.app import create_app
from loyalty.auth import scopes
from loyalty.db import db
from tests.conftest import NO_RATE_LIMITS


@pytest.fixture
def limited(app: Flask) -> Iterator[Callable[..., Flask]]:
    """build(**limits) -> the service on the test database with those rate limits."""
    built: list[Flask] = []

    def build(**limits: Any) -> Flask:
        settings = app.extensions["omniloyal.settings"]
        other = create_app(
            {
                "database_url": settings.database_url,
                "redis_url": settings.redis_url,
                "secret_key": settings.secret_key,
                "run_embedded_worker": False,
                **NO_RATE_LIMITS,
                **limits,
            }
        )
        built.append(other)
        db.session.remove()  # end the test's transaction: the other app uses the database
        return other

    yield build
    for other in built:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def _assert_rate_limited(response: Any) -> None:
    assert response.status_code == 429, response.json
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["type"].endswith("/rate-limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_each_api_key_has_its_own_request_limit(limited, make):
    first, second = make.api_key(scopes.MEMBERS_READ), make.api_key(scopes.MEMBERS_READ)
    client = limited(rate_limit_per_caller="3/minute").test_client()
    statuses = [client.get("/v1/members/1/balance", headers=first).status_code for _ in range(3)]
    assert statuses == [404, 404, 404]
    _assert_rate_limited(client.get("/v1/members/1/balance", headers=first))
    assert client.get("/v1/members/1/balance", headers=second).status_code == 404


def test_a_members_app_tokens_share_one_limit(limited, make):
    member_id = make.member().id
    token, other_token = make.member_token(member_id), make.member_token(member_id)
    client = limited(rate_limit_per_caller="2/minute").test_client()
    assert client.get("/v1/me/balance", headers=token).status_code == 200
    assert client.get("/v1/me/balance", headers=other_token).status_code == 200
    _assert_rate_limited(client.get("/v1/me/balance", headers=token))


def test_a_token_minted_before_a_merge_shares_the_survivors_limit(limited, make):
    from loyalty.clock import utcnow
    from loyalty.members.merge import merge_members

    survivor, merged = make.member().id, make.member().id
    old_token = make.member_token(merged)
    merge_members(survivor, merged, reason=None, now=utcnow(), actor="test")
    db.session.commit()
    new_token = make.member_token(survivor)
    client = limited(rate_limit_per_caller="2/minute").test_client()
    assert client.get("/v1/me/balance", headers=old_token).status_code == 200
    assert client.get("/v1/me/balance", headers=new_token).status_code == 200
    _assert_rate_limited(client.get("/v1/me/balance", headers=old_token))


def test_each_client_ip_has_a_limit_that_failed_authentications_count_against(limited, make):
    key = make.api_key(scopes.MEMBERS_READ)
    member = make.member_token(make.member().id)
    client = limited(rate_limit_per_ip="3/minute").test_client()
    guesses = [{"Authorization": f"Bearer olk_abc{n}_guess"} for n in range(3)]
    assert [client.get("/v1/members/1/balance", headers=h).status_code for h in guesses] == [
        401,
        401,
        401,
    ]
    _assert_rate_limited(client.get("/v1/members/1/balance", headers=guesses[0]))
    _assert_rate_limited(client.get("/v1/me/balance"))  # anonymous calls too
    elsewhere = {"REMOTE_ADDR": "192.0.2.7"}
    response = client.get("/v1/members/1/balance", headers=guesses[0], environ_base=elsewhere)
    assert response.status_code == 401  # another address is not held back
    # Valid credentials have their per-caller limit instead (phones share NAT addresses).
    assert client.get("/v1/members/999999/balance", headers=key).status_code == 404
    assert client.get("/v1/me/balance", headers=member).status_code == 200
    assert client.get("/healthz").status_code == 200  # probes are never limited


def test_minting_member_tokens_has_a_tighter_limit_per_key(limited, make):
    backend = make.api_key(scopes.MEMBER_TOKENS, scopes.MEMBERS_READ)
    member_id = make.member().id
    client = limited(rate_limit_member_tokens="2/minute").test_client()
    for _ in range(2):
        minted = client.post("/v1/member-tokens", json={"member_id": member_id}, headers=backend)
        assert minted.status_code == 201
    _assert_rate_limited(
        client.post("/v1/member-tokens", json={"member_id": member_id}, headers=backend)
    )
    # The key's other calls aren't held back by the minting limit.
    assert client.get(f"/v1/members/{member_id}/balance", headers=backend).status_code == 200


def test_identify_has_a_tighter_limit_per_key(limited, make):
    till, other_till = make.api_key(scopes.MEMBERS_READ), make.api_key(scopes.MEMBERS_READ)
    client = limited(rate_limit_identify="2/minute").test_client()
    lookup = {"email": "nobody@example.com"}
    for _ in range(2):
        assert client.post("/v1/members/identify", json=lookup, headers=till).status_code == 404
    _assert_rate_limited(client.post("/v1/members/identify", json=lookup, headers=till))
    assert client.post("/v1/members/identify", json=lookup, headers=other_till).status_code == 404


def test_a_write_that_took_effect_replays_even_when_its_caller_is_rate_limited(limited, make):
    from tests.earning.factories import order_body
    from tests.factories import idem

    till = make.api_key(scopes.ORDERS_WRITE)
    member_id = make.member().id
    client = limited(rate_limit_per_caller="2/minute").test_client()
    by_id = order_body({"member_id": member_id})
    by_key = order_body({"member_id": member_id})
    key = idem(till)
    first = client.post("/v1/orders", json=by_id, headers=till)
    second = client.post("/v1/orders", json=by_key, headers=key)
    assert (first.status_code, second.status_code) == (201, 201)

    replay = client.post("/v1/orders", json=by_key, headers=key)  # over the limit
    assert (replay.status_code, replay.json) == (201, second.json)
    assert replay.headers["Idempotent-Replayed"] == "true"
    again = client.post("/v1/orders", json=by_id, headers=till)
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert again.json["points_earned"] == first.json["points_earned"]
    # New writes, other content under a used id, and reads are limited as before.
    _assert_rate_limited(client.post("/v1/orders", json=order_body({"member_id": member_id}),
                                     headers=till))  # fmt: skip
    _assert_rate_limited(client.post("/v1/orders", json={**by_id, "currency": "USD"}, headers=till))
    _assert_rate_limited(client.get("/v1/orders/" + by_id["order_id"], headers=till))


def test_with_redis_unreachable_the_limits_still_hold_in_memory_and_nothing_is_refused_for_it(
    limited, make
):
    member_id = make.member().id
    token = make.member_token(member_id)
    client = limited(
        redis_url="redis://127.0.0.1:1/0",  # nothing listens on port 1
        rate_limit_per_caller="2/minute",
    ).test_client()

    assert client.get("/v1/me/balance", headers=token).status_code == 200
    assert client.get("/v1/me/balance", headers=token).status_code == 200
    _assert_rate_limited(client.get("/v1/me/balance", headers=token))
