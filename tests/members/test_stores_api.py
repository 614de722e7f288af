"""Stores (admin) and channels."""

from __future__ import annotations

from loyalty.auth import scopes
from tests.factories import error_fields, idem
from tests.members.factories import PROBLEM

STORE = {
    "id": "PAR-01",
    "name": "Paris Rivoli",
    "region": "île-de-france",
    "country": "FR",
    "timezone": "Europe/Paris",
    "partner": False,
}


def test_an_admin_creates_lists_gets_and_updates_stores(client, make):
    admin = make.api_key(scopes.ADMIN)
    created = client.post("/v1/stores", json=STORE, headers=idem(admin))
    assert created.status_code == 201, created.json
    assert created.json["id"] == "PAR-01" and created.json["active"] is True
    client.post("/v1/stores", json={**STORE, "id": "LYO-01", "partner": True}, headers=idem(admin))

    listed = client.get("/v1/stores", headers=admin).json
    assert [s["id"] for s in listed["items"]] == ["LYO-01", "PAR-01"]
    assert listed["next_cursor"] is None
    first = client.get("/v1/stores?limit=1", headers=admin).json
    assert [s["id"] for s in first["items"]] == ["LYO-01"]
    rest = client.get(f"/v1/stores?limit=1&cursor={first['next_cursor']}", headers=admin).json
    assert [s["id"] for s in rest["items"]] == ["PAR-01"] and rest["next_cursor"] is None
    partners = client.get("/v1/stores?partner=true", headers=admin).json
    assert [s["id"] for s in partners["items"]] == ["LYO-01"]
    assert client.get("/v1/stores/PAR-01", headers=admin).json["name"] == "Paris Rivoli"

    updated = client.patch(
        "/v1/stores/PAR-01", json={"name": "Paris Rivoli 2", "active": False}, headers=idem(admin)
    )
    assert updated.status_code == 200
    assert updated.json["name"] == "Paris Rivoli 2" and updated.json["active"] is False
    assert updated.json["timezone"] == "Europe/Paris"


def test_a_store_code_is_created_once(client, make):
    admin = make.api_key(scopes.ADMIN)
    client.post("/v1/stores", json=STORE, headers=idem(admin))
    again = client.post("/v1/stores", json=STORE, headers=idem(admin))
    assert again.status_code == 409 and again.mimetype == PROBLEM


def test_a_store_needs_an_iana_timezone_and_valid_fields(client, make):
    admin = make.api_key(scopes.ADMIN)
    bad = {**STORE, "timezone": "Paris", "country": "fra", "name": "Bad\x07name", "extra": 1}
    response = client.post("/v1/stores", json=bad, headers=idem(admin))
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert set(error_fields(response.json)) == {"timezone", "country", "name", "extra"}
    assert (
        client.patch(
            "/v1/stores/PAR-01", json={"timezone": "Mars/Base"}, headers=idem(admin)
        ).status_code
        == 422
    )


def test_unknown_store_is_404(client, make):
    admin = make.api_key(scopes.ADMIN)
    assert client.get("/v1/stores/NOPE", headers=admin).status_code == 404
    response = client.patch("/v1/stores/NOPE", json={"name": "x"}, headers=idem(admin))
    assert response.status_code == 404


def test_a_store_key_sees_only_its_own_store_and_cannot_manage_stores(client, make):
    make.store("OWN")
    make.store("OTHER")
    key = make.api_key(scopes.ADMIN, store_id="OWN")
    assert client.get("/v1/stores/OWN", headers=key).status_code == 200
    assert client.get("/v1/stores/OTHER", headers=key).status_code == 404
    assert [s["id"] for s in client.get("/v1/stores", headers=key).json["items"]] == ["OWN"]
    assert client.patch("/v1/stores/OWN", json={"name": "x"}, headers=idem(key)).status_code == 403
    assert client.post("/v1/stores", json=STORE, headers=idem(key)).status_code == 403


def test_stores_need_the_admin_scope(client, make):
    pos = make.api_key(*scopes.POS)
    assert client.get("/v1/stores", headers=pos).status_code == 403
    assert client.post("/v1/stores", json=STORE, headers=idem(pos)).status_code == 403
    assert client.get("/v1/stores").status_code == 401


def test_channels_lists_every_sales_channel(client, make):
    channels = client.get("/v1/channels", headers=make.api_key(scopes.ADMIN)).json["items"]
    assert channels == [  # by code, like every list
        {"code": "app", "needs_store": False},
        {"code": "online", "needs_store": False},
        {"code": "partner", "needs_store": True},
        {"code": "store", "needs_store": True},
    ]
