"""One situation, one answer, wherever it happens: every kind of repeat of a write looks
like a replay, and a blocked member is one problem type on every path."""

from __future__ import annotations

import pytest

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.members.operations import block_member
from tests.coupons import factories as coupons
from tests.earning.factories import base_rate, order_body
from tests.factories import idem

REPLAYED = "Idempotent-Replayed"


def _same_answer(first, again, status: int) -> None:
    assert (first.status_code, again.status_code) == (status, status), again.json
    assert REPLAYED not in first.headers
    assert again.headers[REPLAYED] == "true"
    assert again.json == first.json


class TestEveryRepeatLooksLikeAReplay:
    def test_the_same_idempotency_key_replays_the_first_status(self, client, make):
        admin = make.api_key()
        member = make.member(points=100)
        headers = idem(admin, "hold-1")
        first = client.post(f"/v1/members/{member.id}/holds", json={"points": 10}, headers=headers)
        again = client.post(f"/v1/members/{member.id}/holds", json={"points": 10}, headers=headers)
        _same_answer(first, again, 201)

    def test_an_order_posted_again_by_its_order_id(self, client, make):
        pos = make.api_key(*scopes.POS)
        member = make.member()
        base_rate()
        body = order_body({"member_id": member.id})
        first = client.post("/v1/orders", json=body, headers=idem(pos))
        again = client.post("/v1/orders", json=body, headers=idem(pos))  # another key
        _same_answer(first, again, 201)

    def test_a_second_cancel(self, client, make):
        pos = make.api_key(*scopes.POS)
        member = make.member()
        base_rate()
        order = client.post("/v1/orders", json=order_body({"member_id": member.id}), headers=pos)
        url = f"/v1/orders/{order.json['order_id']}/cancel"
        first = client.post(url, headers=idem(pos))
        again = client.post(url, headers=idem(pos))
        _same_answer(first, again, 200)

    def test_a_points_hold_captured_twice_for_the_same_order(self, client, make):
        admin = make.api_key()
        member = make.member(points=100)
        hold = client.post(
            f"/v1/members/{member.id}/holds", json={"points": 30}, headers=idem(admin)
        ).json
        url = f"/v1/holds/{hold['id']}/capture"
        capture = {"points": 20, "order_id": "TILL-1"}
        first = client.post(url, json=capture, headers=idem(admin))
        again = client.post(url, json=capture, headers=idem(admin))
        _same_answer(first, again, 200)
        assert client.get(f"/v1/members/{member.id}/balance", headers=admin).json["balance"] == 80
        # Another capture of the same hold is no repeat: a conflict.
        other = client.post(url, json={"points": 10, "order_id": "TILL-1"}, headers=idem(admin))
        assert other.status_code == 409

    def test_a_coupon_hold_captured_twice(self, client, make):
        make.store("S1")
        pos = make.api_key(scopes.COUPONS_REDEEM, store_id="S1")
        offer = coupons.offer()
        [code] = coupons.codes(offer.id)
        held = client.post("/v1/coupons/holds", json=coupons.body([code]), headers=idem(pos))
        assert held.status_code == 201, held.json
        url = f"/v1/coupons/holds/{held.json['checkout_ref']}/capture"
        first = client.post(url, json={"order_ref": "O-1"}, headers=idem(pos))
        again = client.post(url, json={"order_ref": "O-1"}, headers=idem(pos))
        assert (first.status_code, again.status_code) == (200, 200)
        assert REPLAYED not in first.headers and again.headers[REPLAYED] == "true"
        assert again.json["redemptions"] == first.json["redemptions"]


class TestABlockedMemberIsOneProblemEverywhere:
    @pytest.fixture
    def blocked(self, make):
        member = make.member(points=100)
        block_member(member.id, reason="fraud", now=utcnow(), actor="test")
        db.session.commit()
        return member

    def _assert_not_active(self, response) -> None:
        assert response.status_code == 409, response.json
        assert response.json["type"] == "/problems/member-not-active"
        assert response.json["title"] == "Member is not active"

    def test_an_order(self, client, make, blocked):
        pos = make.api_key(*scopes.POS)
        body = order_body({"member_id": blocked.id})
        self._assert_not_active(client.post("/v1/orders", json=body, headers=idem(pos)))

    def test_a_points_hold(self, client, make, blocked):
        url = f"/v1/members/{blocked.id}/holds"
        self._assert_not_active(client.post(url, json={"points": 5}, headers=idem(make.api_key())))

    def test_issuing_a_coupon(self, client, make, blocked):
        offer = coupons.offer()
        url = f"/v1/coupons/offers/{offer.id}/issue"
        response = client.post(url, json={"member_ids": [blocked.id]}, headers=idem(make.api_key()))
        self._assert_not_active(response)
        assert response.json["member_ids"] == [blocked.id]

    def test_a_member_token(self, client, make, blocked):
        body = {"member_id": blocked.id}
        headers = make.api_key(scopes.MEMBER_TOKENS)
        self._assert_not_active(client.post("/v1/member-tokens", json=body, headers=headers))
