"""A key mints keys only within its own reach: its scopes, and its store binding."""

from __future__ import annotations

import pytest

from loyalty.auth import scopes
from tests.factories import idem

pytestmark = pytest.mark.usefixtures("app")


@pytest.fixture
def stores(make):
    make.store("S1")
    make.store("S2")


def _mint(client, headers, **body):  # type: ignore[no-untyped-def]
    return client.post("/v1/api-clients", json={"name": "new", **body}, headers=idem(headers))


def test_a_store_bound_admin_key_cannot_mint_an_unbound_or_foreign_store_key(client, make, stores):
    store_admin = make.api_key(scopes.ADMIN, scopes.ORDERS_WRITE, store_id="S1")
    unbound = _mint(client, store_admin, scopes=["admin"], store_id=None)
    assert unbound.status_code == 403  # was 201: an unbound admin key acting for any store
    assert unbound.json["reason"] == "store_binding"
    assert _mint(client, store_admin, scopes=["admin"]).status_code == 403  # store_id omitted
    assert _mint(client, store_admin, scopes=["admin"], store_id="S2").status_code == 403
    own = _mint(client, store_admin, scopes=["orders:write"], store_id="S1")
    assert own.status_code == 201 and own.json["store_id"] == "S1"


def test_a_key_cannot_grant_scopes_it_does_not_hold(client, make, stores):
    admin = make.api_key(scopes.ADMIN, scopes.ORDERS_WRITE)
    wider = _mint(client, admin, scopes=["orders:write", "finance:read"])
    assert wider.status_code == 403
    assert wider.json["reason"] == "scope_not_held"
    assert _mint(client, admin, scopes=["orders:write"], store_id="S2").status_code == 201


def test_a_store_bound_admin_key_lists_and_revokes_its_own_stores_keys_only(client, make, stores):
    store_admin = make.api_key(scopes.ADMIN, store_id="S1")
    head_office = make.api_key(scopes.ADMIN)
    other_store = _mint(client, head_office, scopes=["admin"], store_id="S2").json
    listed = client.get("/v1/api-clients", headers=store_admin).json["items"]
    assert {c["store_id"] for c in listed} == {"S1"}
    revoke = client.post(f"/v1/api-clients/{other_store['id']}/revoke", headers=store_admin)
    assert revoke.status_code == 404
    assert len(client.get("/v1/api-clients", headers=head_office).json["items"]) == 3
