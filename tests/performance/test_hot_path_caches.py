"""Per-process caches on the hot paths (loyalty/cache.py) never serve a stale row to the
process that changed it, and other processes' changes are seen within the TTL."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty import cache
from loyalty.auth import scopes
from loyalty.auth.keys import _owners_by_prefix
from loyalty.auth.models import ApiClient
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.earning import operations as earning
from loyalty.earning.models import EarningRule
from loyalty.stores.models import Store
from loyalty.tiers import operations as tiers
from tests.earning.factories import base_rate, order_body
from tests.factories import idem


def post(client: Any, headers: dict[str, str], member_id: int, **more: Any) -> Any:
    return client.post(
        "/v1/orders", json=order_body({"member_id": member_id}, **more), headers=headers
    )


def test_a_revoked_key_is_refused_at_once_by_the_process_that_revoked_it(client, make):
    admin = make.api_key()
    pos = make.api_key(scopes.ORDERS_WRITE)
    member = make.member()
    assert post(client, pos, member.id).status_code == 201  # the key is now cached
    client_id = db.session.scalar(sa.select(sa.func.max(ApiClient.id)))
    revoked = client.post(f"/v1/api-clients/{client_id}/revoke", headers=idem(admin))
    assert revoked.status_code == 200, revoked.json
    assert post(client, pos, member.id).status_code == 401


def test_a_key_revoked_by_another_process_is_refused_once_the_ttl_has_passed(
    client, make, monkeypatch
):
    pos = make.api_key(scopes.ORDERS_WRITE)
    member = make.member()
    monkeypatch.setattr(_owners_by_prefix, "ttl", 0.2)
    assert post(client, pos, member.id).status_code == 201
    # Another process revokes: a Core UPDATE here does not go through this process's ORM.
    db.session.execute(sa.update(ApiClient.__table__).values(active=False))
    db.session.commit()
    time.sleep(0.3)
    assert post(client, pos, member.id).status_code == 401


def test_a_new_earning_rule_applies_to_the_very_next_order(client, make):
    pos = make.api_key(scopes.ORDERS_WRITE)
    member = make.member()
    first = post(client, pos, member.id)
    assert first.json["points_earned"] == 0  # no rules yet (and that is now cached)
    base_rate(points=1, per_minor=100)
    assert post(client, pos, member.id).json["points_earned"] == 100


def test_a_rule_written_in_a_transaction_that_rolls_back_is_never_cached(app, make):
    earning.create_rule(
        {"name": "1/EUR", "kind": "base_rate", "currency": "EUR", "points": 1, "per_minor": 100},
        now=utcnow(),
    )
    assert len(earning._rules_at(utcnow(), event=False)) == 1  # read past the cache
    db.session.rollback()
    assert earning._rules_at(utcnow(), event=False) == []


def test_a_deactivated_store_refuses_orders_at_once(client, make):
    store = make.store("S-CACHE")
    pos = make.api_key(scopes.ORDERS_WRITE, store_id=store.id)
    admin = make.api_key()
    member = make.member()
    assert post(client, pos, member.id, channel="store").status_code == 201
    patched = client.patch(f"/v1/stores/{store.id}", json={"active": False}, headers=idem(admin))
    assert patched.status_code == 200, patched.json
    refused = post(client, pos, member.id, channel="store")
    assert refused.status_code == 422 and "store" in refused.json["detail"]


def test_a_new_tier_multiplier_applies_to_the_next_order(client, make):
    pos = make.api_key(scopes.ORDERS_WRITE)
    member = make.member()
    base_rate(points=1, per_minor=100)
    assert post(client, pos, member.id).json["points_earned"] == 100
    tiers.create_tier(
        {"code": "base", "name": "Base", "rank": 0, "earn_multiplier_pct": 200}, now=utcnow()
    )
    db.session.commit()
    tiers.reevaluate_member_tier(member.id, utcnow())
    db.session.commit()
    assert post(client, pos, member.id).json["points_earned"] == 200


def test_clear_all_forgets_every_snapshot(app, make):
    make.store("S-CLEAR")
    assert earning._check_store("S-CLEAR", earning.Channel.STORE) is not None
    db.session.execute(sa.delete(Store.__table__).where(Store.__table__.c.id == "S-CLEAR"))
    db.session.commit()
    cache.clear_all()
    with pytest.raises(earning.InvalidInput):
        earning._check_store("S-CLEAR", earning.Channel.STORE)


def test_writes_to_unrelated_models_leave_the_caches_alone(app, make):
    base_rate()
    assert len(earning._rules_at(utcnow(), event=False)) == 1
    make.member()  # flushes members, identities, accounts
    # Still served from the cache: a rule inserted behind the ORM's back is not seen yet.
    db.session.execute(
        sa.insert(EarningRule.__table__).values(
            name="hidden",
            kind="bonus",
            active=True,
            points=0,
            per_minor=1,
            multiplier_pct=100,
            bonus_points=5,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
    )
    db.session.commit()
    assert len(earning._rules_at(utcnow(), event=False)) == 1


@pytest.mark.postgres
def test_the_balance_read_is_the_token_check_and_one_balance_statement_on_postgresql(client, make):
    """Two single statements outside any transaction: the token check (member and issuing
    client, one join; see loyalty/auth/tokens.py) and the balance read."""
    member_id = make.member(points=10).id
    headers = make.member_token(member_id)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    db.session.remove()
    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        response = client.get("/v1/me/balance", headers=headers)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    assert response.status_code == 200 and response.json["available"] == 10
    assert len(statements) == 2
    assert all(s.lstrip().upper().startswith("SELECT") for s in statements)
    assert "token_epoch" in statements[0] and "ledger_accounts" in statements[1]
