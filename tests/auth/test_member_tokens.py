"""Member app tokens can be revoked; a member QR token is good for one use at a till."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.auth.jobs import purge_used_qr_tokens
from loyalty.auth.models import UsedQrToken
from loyalty.auth.tokens import mint_member_qr, use_member_qr
from loyalty.clock import utcnow
from loyalty.db import db
from tests.concurrency import in_threads
from tests.earning.factories import order_body
from tests.factories import error_fields, idem

pytestmark = pytest.mark.usefixtures("app")


def _app_token(client, backend, member_id):  # type: ignore[no-untyped-def]
    minted = client.post("/v1/member-tokens", json={"member_id": member_id}, headers=backend)
    assert minted.status_code == 201, minted.json
    return {"Authorization": f"Bearer {minted.json['token']}"}


def test_revoking_the_app_backends_key_revokes_the_tokens_it_minted(client, make):
    admin = make.api_key(scopes.ADMIN)
    backend = make.api_key(scopes.MEMBER_TOKENS, name="app backend")
    backend_id = client.get("/v1/api-clients", headers=admin).json["items"][-1]["id"]
    token = _app_token(client, backend, make.member().id)
    assert client.get("/v1/me/balance", headers=token).status_code == 200
    client.post(f"/v1/api-clients/{backend_id}/revoke", headers=idem(admin))
    refused = client.get("/v1/me/balance", headers=token)
    assert refused.status_code == 401
    assert "revoked" in refused.json["detail"]


def test_a_blocked_members_tokens_stop_working_and_stay_dead_after_an_unblock(client, make):
    admin = make.api_key(scopes.ADMIN)
    backend = make.api_key(scopes.MEMBER_TOKENS)
    member_id = make.member().id
    token = _app_token(client, backend, member_id)
    assert client.get("/v1/me/balance", headers=token).status_code == 200
    client.post(f"/v1/members/{member_id}/block", json={"reason": "fraud"}, headers=idem(admin))
    assert client.get("/v1/me/balance", headers=token).status_code == 401
    assert client.get("/v1/me/history", headers=token).status_code == 401
    client.post(f"/v1/members/{member_id}/unblock", headers=idem(admin))
    assert client.get("/v1/me/balance", headers=token).status_code == 401
    fresh = _app_token(client, backend, member_id)  # signing in again works
    assert client.get("/v1/me/balance", headers=fresh).status_code == 200


def test_an_erased_members_tokens_stop_working(client, make):
    admin = make.api_key(scopes.ADMIN)
    member_id = make.member().id
    token = make.member_token(member_id)
    assert client.get("/v1/me/balance", headers=token).status_code == 200
    assert client.post(f"/v1/members/{member_id}/erase", headers=idem(admin)).status_code == 200
    assert client.get("/v1/me/balance", headers=token).status_code == 401
    assert client.get("/v1/me", headers=token).status_code == 401


def test_a_revoked_member_token_names_no_member_in_an_order(client, make):
    admin = make.api_key(scopes.ADMIN)
    till = make.api_key(scopes.ORDERS_WRITE)
    member_id = make.member().id
    token = make.member_token(member_id)["Authorization"].removeprefix("Bearer ")
    client.post(f"/v1/members/{member_id}/block", json={"reason": "x"}, headers=idem(admin))
    client.post(f"/v1/members/{member_id}/unblock", headers=idem(admin))
    refused = client.post("/v1/orders", json=order_body({"member_token": token}), headers=till)
    assert refused.status_code == 422
    assert "member.member_token" in error_fields(refused.json)


def test_checking_a_member_token_costs_one_statement(app, client, make):
    token = make.member_token(make.member().id)
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert client.get("/v1/me/qr", headers=token).status_code == 405  # auth, no handler
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


# --- QR tokens ------------------------------------------------------------------------------


def test_a_qr_token_identifies_the_member_once(client, make):
    till = make.api_key(scopes.MEMBERS_READ)
    member_id = make.member().id
    qr = mint_member_qr(member_id, now=utcnow()).token
    first = client.post("/v1/members/identify", json={"qr_token": qr}, headers=till)
    assert first.status_code == 200 and first.json["member"]["id"] == member_id
    replay = client.post("/v1/members/identify", json={"qr_token": qr}, headers=till)
    assert replay.status_code == 404  # was 200 for the token's whole lifetime
    assert replay.json["type"].endswith("/member-code-invalid")
    assert "used" in replay.json["detail"]


def test_a_qr_token_used_at_identify_cannot_name_the_member_of_an_order(client, make):
    till = make.api_key(scopes.MEMBERS_READ, scopes.ORDERS_WRITE)
    member_id = make.member().id
    qr = mint_member_qr(member_id, now=utcnow()).token
    assert (
        client.post("/v1/members/identify", json={"qr_token": qr}, headers=till).status_code == 200
    )
    order = client.post("/v1/orders", json=order_body({"qr_token": qr}), headers=till)
    assert order.status_code == 422
    assert "member.qr_token" in error_fields(order.json)


def test_a_qr_token_in_an_order_that_failed_is_still_good(client, make):
    till = make.api_key(scopes.ORDERS_WRITE)
    qr = mint_member_qr(make.member().id, now=utcnow()).token
    wrong_total = order_body({"qr_token": qr}, total_minor=1)
    assert client.post("/v1/orders", json=wrong_total, headers=till).status_code == 422
    db.session.remove()  # as a server would: a fresh session per request
    assert (
        client.post("/v1/orders", json=order_body({"qr_token": qr}), headers=till).status_code
        == 201
    )
    again = client.post("/v1/orders", json=order_body({"qr_token": qr}), headers=till)
    assert again.status_code == 422


def test_expired_qr_use_records_are_purged(make):
    now = utcnow()
    member_id = make.member().id
    use_member_qr(mint_member_qr(member_id, now=now).token, now=now)
    db.session.commit()
    assert purge_used_qr_tokens() == 0  # the token could still be shown
    db.session.execute(sa.update(UsedQrToken).values(expires_at=now - timedelta(seconds=1)))
    db.session.commit()
    assert purge_used_qr_tokens() == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(UsedQrToken)) == 0


@pytest.mark.postgres
def test_concurrent_uses_of_one_qr_token_let_exactly_one_through(app, make):
    till = make.api_key(scopes.MEMBERS_READ)
    qr = mint_member_qr(make.member().id, now=utcnow()).token

    def identify(_: int) -> int:
        response = app.test_client().post(
            "/v1/members/identify", json={"qr_token": qr}, headers=till
        )
        return response.status_code

    statuses = in_threads(app, 8, identify)
    assert sorted(statuses) == [200] + [404] * 7
