"""The member's wallet, issuing, the rewards catalogue (points for coupons), merges."""

from __future__ import annotations

from datetime import timedelta

import pytest

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.coupons.wallet import issue_to_members
from loyalty.db import db
from loyalty.ledger.operations import member_balance
from tests.coupons import factories as f
from tests.factories import idem

pytestmark = pytest.mark.usefixtures("app")


def wallet(client, make, member_id):
    response = client.get("/v1/me/coupons", headers=make.member_token(member_id))
    assert response.status_code == 200
    return {c["code"]: c for c in response.json["items"]}


def test_issued_coupons_appear_with_status_and_where_they_can_be_used(client, make):
    make.store("S1")
    member = make.member()
    admin = make.api_key(scopes.COUPONS_ADMIN)
    pos = make.api_key(scopes.COUPONS_REDEEM, store_id="S1")
    offer = f.offer(channels=["store", "app"], valid_days_after_issue=30)
    issued = client.post(f"/v1/coupons/offers/{offer.id}/issue",
                         json={"member_ids": [member.id]}, headers=idem(admin))  # fmt: skip
    assert issued.status_code == 201
    [available] = [c["code"] for c in issued.json["items"]]
    held, redeemed = (
        issue_to_members(offer.id, [member.id], now=utcnow(), actor="t")[0].code for _ in "ab"
    )
    [expired] = [c.code for c in issue_to_members(
        offer.id, [member.id], now=utcnow() - timedelta(days=31), actor="t")]  # fmt: skip
    db.session.commit()
    assert client.post("/v1/coupons/holds", json=f.body([held], member_id=member.id),
                       headers=idem(pos)).status_code == 201  # fmt: skip
    assert client.post("/v1/coupons/redeem", json=f.body([redeemed], member_id=member.id,
                       order_ref="r"), headers=idem(pos)).status_code == 201  # fmt: skip
    coupons = wallet(client, make, member.id)
    assert {code: c["status"] for code, c in coupons.items()} == {
        available: "available", held: "held", redeemed: "redeemed", expired: "expired",
    }  # fmt: skip
    assert coupons[available]["where"] == {
        "everywhere": False, "channels": ["app", "store"], "store_ids": [], "regions": [],
    }  # fmt: skip
    assert coupons[available]["local_expires_at"] is not None


def test_a_member_sees_only_their_own_coupons(client, make):
    owner, other = make.member(), make.member()
    [coupon] = issue_to_members(f.offer().id, [owner.id], now=utcnow(), actor="t")
    db.session.commit()
    assert list(wallet(client, make, owner.id)) == [coupon.code]
    assert wallet(client, make, other.id) == {}


def test_another_members_code_looks_unknown_to_a_member(client, make):
    owner, other = make.member(), make.member()
    [coupon] = issue_to_members(f.offer().id, [owner.id], now=utcnow(), actor="t")
    db.session.commit()
    response = client.post("/v1/me/coupons/validate", json=f.body([coupon.code, "NOSUCH9999"],
                           channel="app"), headers=make.member_token(other.id))  # fmt: skip
    assert [r["reasons"] for r in response.json["results"]] == [["unknown_code"]] * 2
    assert [r["offer"] for r in response.json["results"]] == [None, None]


class TestRewards:
    @pytest.fixture
    def reward(self, client, make):
        admin = make.api_key(scopes.COUPONS_ADMIN)
        offer = f.offer(kind="fixed_amount", amount_minor=500, percent_bp=None)
        response = client.post("/v1/coupons/rewards", json={"offer_id": offer.id,
                               "name": "5 EUR off", "points_cost": 400, "stock": 5},
                               headers=idem(admin))  # fmt: skip
        assert response.status_code == 201
        return response.json

    def test_buying_a_reward_burns_points_and_issues_the_coupon_together(
        self, client, make, reward
    ):
        member = make.member(points=1000)
        token = make.member_token(member.id)
        offered = client.get("/v1/me/rewards", headers=token).json["items"]
        assert [r["id"] for r in offered] == [reward["id"]]
        bought = client.post(f"/v1/me/rewards/{reward['id']}/redeem", headers=idem(token))
        assert bought.status_code == 201 and bought.json["member_id"] == member.id
        assert member_balance(member.id).available == 600
        coupon = wallet(client, make, member.id)[bought.json["code"]]
        assert coupon["status"] == "available" and coupon["returnable"] is True
        assert coupon["source"] == {"type": "reward", "ref": str(reward["id"])}

    def test_without_enough_points_no_coupon_is_issued(self, client, make, reward):
        member = make.member(points=100)
        token = make.member_token(member.id)
        refused = client.post(f"/v1/me/rewards/{reward['id']}/redeem", headers=idem(token))
        assert refused.status_code == 409
        assert wallet(client, make, member.id) == {}
        assert member_balance(member.id).available == 100

    def test_returning_an_unused_reward_coupon_refunds_the_points_once(self, client, make, reward):
        member = make.member(points=1000)
        token = make.member_token(member.id)
        bought = client.post(f"/v1/me/rewards/{reward['id']}/redeem", headers=idem(token))
        code_id = bought.json["id"]
        returned = client.post(f"/v1/me/coupons/{code_id}/return", headers=idem(token))
        assert returned.status_code == 200 and returned.json["status"] == "returned"
        again = client.post(f"/v1/me/coupons/{code_id}/return", headers=idem(token))
        assert again.status_code == 409
        assert member_balance(member.id).available == 1000
        assert wallet(client, make, member.id) == {}

    def test_a_used_reward_coupon_cannot_be_returned(self, client, make, reward):
        make.store("S1")
        member = make.member(points=1000)
        token = make.member_token(member.id)
        bought = client.post(f"/v1/me/rewards/{reward['id']}/redeem", headers=idem(token)).json
        pos = make.api_key(scopes.COUPONS_REDEEM, store_id="S1")
        client.post("/v1/coupons/redeem", json=f.body([bought["code"]], member_id=member.id,
                    order_ref="x"), headers=idem(pos))  # fmt: skip
        refused = client.post(f"/v1/me/coupons/{bought['id']}/return", headers=idem(token))
        assert refused.status_code == 409 and refused.json["reason"] == "not_returnable"
        assert member_balance(member.id).available == 600

    def test_another_members_coupon_cannot_be_returned(self, client, make, reward):
        buyer, other = make.member(points=1000), make.member()
        bought = client.post(f"/v1/me/rewards/{reward['id']}/redeem",
                             headers=idem(make.member_token(buyer.id))).json  # fmt: skip
        response = client.post(f"/v1/me/coupons/{bought['id']}/return",
                               headers=idem(make.member_token(other.id)))  # fmt: skip
        assert response.status_code == 404


def test_a_merge_moves_coupons_to_the_survivor(client, make):
    from loyalty.members.merge import merge_members

    survivor, merged = make.member(), make.member()
    [coupon] = issue_to_members(f.offer().id, [merged.id], now=utcnow(), actor="t")
    db.session.commit()
    merge_members(survivor.id, merged.id, reason="dup", now=utcnow(), actor="t")
    db.session.commit()
    assert list(wallet(client, make, survivor.id)) == [coupon.code]


def test_the_privacy_export_lists_the_members_coupons(make):
    from loyalty.members.privacy import export_member

    member = make.member()
    [coupon] = issue_to_members(f.offer().id, [member.id], now=utcnow(), actor="t")
    db.session.commit()
    exported = export_member(member.id, now=utcnow())
    assert [c["code"] for c in exported["sections"]["coupons"]["coupons"]] == [coupon.code]
