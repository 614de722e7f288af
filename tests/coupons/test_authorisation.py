"""Who may do what: scopes, store-bound keys, members; others' things look missing."""

from __future__ import annotations

import pytest

from loyalty.auth import scopes
from tests.coupons import factories as f
from tests.factories import error_fields, idem

pytestmark = pytest.mark.usefixtures("app")


@pytest.fixture
def stores(make):
    make.store("S1")
    make.store("S2")


def test_without_credentials_every_coupon_endpoint_answers_401(client):
    assert client.post("/v1/coupons/redeem", json={}).status_code == 401
    assert client.get("/v1/me/coupons").status_code == 401
    assert client.get("/v1/coupons/batches/1/codes.csv").status_code == 401


def test_a_key_without_the_scope_gets_403(client, make):
    pos = make.api_key(scopes.COUPONS_REDEEM)
    assert client.post("/v1/coupons/offers", json={"name": "x", "kind": "percent"},
                       headers=idem(pos)).status_code == 403  # fmt: skip
    assert client.get("/v1/coupons/batches/1/codes.csv", headers=pos).status_code == 403
    admin = make.api_key(scopes.COUPONS_ADMIN)
    assert client.post("/v1/coupons/redeem", json={}, headers=idem(admin)).status_code == 403


def test_a_store_key_cannot_redeem_for_another_store(client, make, stores):
    [code] = f.codes(f.offer().id)
    pos = make.api_key(scopes.COUPONS_REDEEM, store_id="S1")
    response = client.post("/v1/coupons/redeem", json=f.body([code], store_id="S2",
                           order_ref="o"), headers=idem(pos))  # fmt: skip
    assert response.status_code == 403
    assert f.code_row(code).uses == 0


def test_a_store_key_cannot_see_or_roll_back_another_stores_redemptions(client, make, stores):
    [code] = f.codes(f.offer().id)
    s1 = make.api_key(scopes.COUPONS_REDEEM, store_id="S1")
    s2 = make.api_key(scopes.COUPONS_REDEEM, store_id="S2")
    redeemed = client.post("/v1/coupons/redeem", json=f.body([code], order_ref="o"),
                           headers=idem(s1)).json  # fmt: skip
    redemption_id = redeemed["redemptions"][0]["id"]
    assert client.get(f"/v1/coupons/redemptions/{redemption_id}", headers=s2).status_code == 404
    rollback = client.post(f"/v1/coupons/redemptions/{redemption_id}/rollback", headers=idem(s2))
    assert rollback.status_code == 404
    ref = redeemed["checkout_ref"]
    assert client.post(f"/v1/coupons/holds/{ref}/release", headers=idem(s2)).status_code == 404
    assert client.get(f"/v1/coupons/redemptions/{redemption_id}", headers=s1).status_code == 200
    assert f.code_row(code).uses == 1


def test_a_store_channel_basket_needs_a_store(client, make):
    [code] = f.codes(f.offer().id)
    web = make.api_key(scopes.COUPONS_REDEEM)
    response = client.post("/v1/coupons/validate", json=f.body([code]), headers=web)
    assert response.status_code == 422 and list(error_fields(response.json)) == ["store_id"]


def test_member_tokens_cannot_use_pos_or_admin_endpoints(client, make):
    token = make.member_token(make.member().id)
    assert client.post("/v1/coupons/validate", json={}, headers=token).status_code == 403
    assert client.get("/v1/coupons/offers", headers=token).status_code == 403


def test_a_member_cannot_read_another_members_wallet_through_support_endpoints(client, make):
    other = make.member()
    token = make.member_token(make.member().id)
    assert client.get(f"/v1/members/{other.id}/coupons", headers=token).status_code == 403
