"""Contract every endpoint keeps: authenticated, authorised, problem+json errors, documented."""

from __future__ import annotations

import re

import pytest

from loyalty.auth import scopes
from tests.factories import error_fields

PROBLEM = "application/problem+json"


def _v1_routes(app):
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, rule


def _url(rule) -> str:
    numeric = {"int", "member"}  # <member:...> takes an id or ext:<external id>
    return re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: "1" if m.group(1) in numeric else "x", rule.rule)


def test_every_v1_endpoint_declares_who_may_call_it(app):
    undeclared = [
        f"{method} {rule.rule}"
        for method, rule in _v1_routes(app)
        if not hasattr(app.view_functions[rule.endpoint], "_required_scope")
    ]
    assert undeclared == []


def test_every_v1_endpoint_refuses_anonymous_callers_with_a_problem(app, client):
    for method, rule in _v1_routes(app):
        response = client.open(_url(rule), method=method, json={})
        assert response.status_code == 401, f"{method} {rule.rule}"
        assert response.mimetype == PROBLEM
        assert response.json["status"] == 401


def test_every_v1_endpoint_refuses_a_key_without_its_scope(app, client, make):
    for method, rule in _v1_routes(app):
        required = app.view_functions[rule.endpoint]._required_scope
        others = sorted(scopes.ALL - {required})
        headers = make.api_key(*others)
        response = client.open(
            _url(rule), method=method, json={}, headers={**headers, "Idempotency-Key": "k"}
        )
        assert response.status_code == 403, f"{method} {rule.rule} ({required})"
        assert response.mimetype == PROBLEM


def test_member_endpoints_refuse_api_keys_and_api_endpoints_refuse_member_tokens(app, client, make):
    member = make.member()
    api_headers = make.api_key()
    member_headers = make.member_token(member.id)
    for method, rule in _v1_routes(app):
        member_only = app.view_functions[rule.endpoint]._required_scope == "member"
        headers = api_headers if member_only else member_headers
        response = client.open(
            _url(rule), method=method, json={}, headers={**headers, "Idempotency-Key": "k"}
        )
        assert response.status_code == 403, f"{method} {rule.rule}"


@pytest.mark.parametrize(
    "header",
    [
        "Basic abc",
        "Bearer",
        "Bearer olk_nope",
        "Bearer olk_abc_def",
        "Bearer omt_forged.token",
        "Bearer something-else",
    ],
)
def test_malformed_or_unknown_credentials_get_401(client, header):
    response = client.get("/v1/me/balance", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.mimetype == PROBLEM


def test_a_revoked_key_stops_working_at_once(client, make):
    admin = make.api_key(scopes.ADMIN, scopes.MEMBERS_READ)  # it grants only what it holds
    created = client.post(
        "/v1/api-clients",
        json={"name": "till 1", "scopes": ["members:read"]},
        headers={**admin, "Idempotency-Key": "c1"},
    )
    assert created.status_code == 201
    key = {"Authorization": f"Bearer {created.json['key']}"}
    assert client.get("/v1/members/1/balance", headers=key).status_code == 404
    client.post(f"/v1/api-clients/{created.json['id']}/revoke", headers=admin)
    assert client.get("/v1/members/1/balance", headers=key).status_code == 401


class TestProblemDetails:
    def test_malformed_json_is_a_400_problem(self, client, make):
        member = make.member(points=10)
        response = client.post(
            f"/v1/members/{member.id}/holds",
            data="{not json",
            content_type="application/json",
            headers={**make.api_key(), "Idempotency-Key": "a"},
        )
        assert response.status_code == 400
        assert response.mimetype == PROBLEM
        assert response.json["type"].endswith("/bad-request")

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"points": "100"}, "points"),
            ({"points": 0}, "points"),
            ({"points": -5}, "points"),
            ({"points": 10**15}, "points"),
            ({"points": 1.5}, "points"),
            ({"points": 5, "surprise": 1}, "surprise"),
            ({}, "points"),
        ],
    )
    def test_invalid_fields_are_a_422_problem_naming_each_field(self, client, make, body, field):
        member = make.member(points=10)
        response = client.post(
            f"/v1/members/{member.id}/holds",
            json=body,
            headers={**make.api_key(), "Idempotency-Key": "a"},
        )
        assert response.status_code == 422
        assert response.mimetype == PROBLEM
        assert field in error_fields(response.json)

    def test_an_oversized_body_is_a_413_problem(self, client, make):
        response = client.post(
            "/v1/members/1/holds",
            data="x" * 2_000_000,
            content_type="application/json",
            headers={**make.api_key(), "Idempotency-Key": "a"},
        )
        assert response.status_code == 413
        assert response.mimetype == PROBLEM

    def test_unknown_routes_and_methods_are_problems_too(self, client):
        assert client.get("/v1/nope").mimetype == PROBLEM
        response = client.delete("/healthz")
        assert response.status_code == 405 and response.mimetype == PROBLEM

    def test_domain_errors_carry_a_type_and_details(self, client, make):
        member = make.member(points=10)
        response = client.post(
            f"/v1/members/{member.id}/holds",
            json={"points": 11},
            headers={**make.api_key(), "Idempotency-Key": "a"},
        )
        assert response.status_code == 409
        assert response.json["type"].endswith("/insufficient-points")
        assert response.json["available"] == 10

    def test_every_response_carries_a_request_id(self, client):
        assert client.get("/healthz").headers["X-Request-ID"]
        echoed = client.get("/healthz", headers={"X-Request-ID": "till-7-0001"})
        assert echoed.headers["X-Request-ID"] == "till-7-0001"


class TestIdempotency:
    def test_writes_need_an_idempotency_key(self, client, make):
        member = make.member(points=10)
        response = client.post(
            f"/v1/members/{member.id}/holds", json={"points": 5}, headers=make.api_key()
        )
        assert response.status_code == 428

    def test_a_retry_returns_the_first_response_without_a_second_effect(self, client, make):
        member = make.member(points=100)
        headers = {**make.api_key(), "Idempotency-Key": "retry-1"}
        first = client.post(f"/v1/members/{member.id}/holds", json={"points": 40}, headers=headers)
        again = client.post(f"/v1/members/{member.id}/holds", json={"points": 40}, headers=headers)
        assert again.status_code == first.status_code == 201
        assert again.json == first.json
        assert again.headers["Idempotent-Replayed"] == "true"
        balance = client.get(f"/v1/members/{member.id}/balance", headers=headers).json
        assert balance["held"] == 40

    def test_the_same_key_with_another_body_is_refused(self, client, make):
        member = make.member(points=100)
        headers = {**make.api_key(), "Idempotency-Key": "retry-2"}
        client.post(f"/v1/members/{member.id}/holds", json={"points": 40}, headers=headers)
        other = client.post(f"/v1/members/{member.id}/holds", json={"points": 41}, headers=headers)
        assert other.status_code == 422
        assert other.json["type"].endswith("/idempotency-key-reused")

    def test_keys_are_scoped_to_the_api_client(self, client, make):
        member = make.member(points=100)
        for headers in (make.api_key(), make.api_key()):
            response = client.post(
                f"/v1/members/{member.id}/holds",
                json={"points": 10},
                headers={**headers, "Idempotency-Key": "shared"},
            )
            assert response.status_code == 201
        assert (
            client.get(f"/v1/members/{member.id}/balance", headers=make.api_key()).json["held"]
            == 20
        )

    def test_a_failed_request_can_be_retried_with_the_same_key(self, client, make):
        member = make.member(points=10)
        headers = {**make.api_key(), "Idempotency-Key": "after-failure"}
        refused = client.post(
            f"/v1/members/{member.id}/holds", json={"points": 50}, headers=headers
        )
        assert refused.status_code == 409
        make.earn(member.id, 100)
        accepted = client.post(
            f"/v1/members/{member.id}/holds", json={"points": 50}, headers=headers
        )
        assert accepted.status_code == 201


def test_the_openapi_document_is_generated_from_the_schemas(client):
    document = client.get("/openapi.json").json
    assert document["openapi"].startswith("3.")
    assert "/v1/members/{member_id}/holds" in document["paths"]
    hold = document["paths"]["/v1/members/{member_id}/holds"]["post"]
    schema_ref = hold["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert schema["properties"]["points"]["type"] == "integer"
    assert "Problem" in document["components"]["schemas"]
    page = client.get("/docs")
    assert page.status_code == 200
    assert b"/docs-assets/swagger-ui-bundle.js" in page.data
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
