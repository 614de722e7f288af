"""The OpenAPI document is the whole contract: who calls each operation, with which key
and Idempotency-Key, every answer it can give, one error shape, one list shape, and a page
for every problem type."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import loyalty
from loyalty import errors
from loyalty.api import _SLUGS
from loyalty.auth import scopes
from loyalty.errors import PROBLEM_TYPES, OmniloyalError
from tests.factories import error_fields, idem

PROBLEM = "application/problem+json"
METHODS = ("get", "post", "put", "patch", "delete")
MAIN_FLOWS = [
    "enrol",
    "identify",
    "post_order",
    "member_balance",
    "validate_codes",
    "redeem",
    "hold",
    "capture",
    "create_hold",
    "capture_hold",
    "refund_order",
]


@pytest.fixture(scope="module")
def document(app):
    return app.test_client().get("/openapi.json").json


def _operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS and path.startswith("/v1/"):
                yield path, method, operation


def _views(app):
    """(OpenAPI path, method) -> the Flask view function that serves it."""
    views = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            views[path, method.lower()] = app.view_functions[rule.endpoint]
    return views


def _resolve(document, node):
    while "$ref" in node:
        *_, kind, name = node["$ref"].split("/")
        node = document["components"][kind][name]
    return node


def test_every_operation_has_an_id_a_summary_and_a_description(document):
    ids = []
    for path, method, operation in _operations(document):
        assert operation.get("summary"), (method, path)
        assert "**Caller:**" in operation.get("description", ""), (method, path)
        ids.append(operation["operationId"])
    assert len(ids) == len(set(ids)) >= 80


def test_every_operation_declares_its_credential_and_scope(app, document):
    views = _views(app)
    for path, method, operation in _operations(document):
        scope = views[path, method]._required_scope
        expected = [{"MemberToken": []}] if scope == "member" else [{"ApiKey": [scope]}]
        assert operation["security"] == expected, (method, path)
        assert (f"`{scope}` scope" if scope != "member" else "member token") in operation[
            "description"
        ]
    schemes = document["components"]["securitySchemes"]
    assert {schemes[name]["scheme"] for name in ("ApiKey", "MemberToken")} == {"bearer"}


def test_every_write_declares_its_idempotency_key_and_where_it_is_required(app, document):
    views = _views(app)
    declared = 0
    for path, method, operation in _operations(document):
        rule = getattr(views[path, method], "_idempotency", None)
        headers = [p for p in operation.get("parameters", []) if p.get("in") == "header"]
        keys = [p for p in headers if p["name"] == "Idempotency-Key"]
        if rule is None:
            assert keys == [], (method, path)
            continue
        declared += 1
        assert len(keys) == 1 and keys[0]["required"] is (rule == "required"), (method, path)
        assert ("428" in operation["responses"]) is (rule == "required"), (method, path)
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                assert "Idempotent-Replayed" in response.get("headers", {}), (method, path)
    assert declared >= 40


def test_every_error_an_operation_can_give_is_documented_as_a_problem(document):
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        expected = {"401", "403", "429"}
        if "requestBody" in operation:
            expected |= {"400", "413", "415", "422"}
        if method != "get":
            expected |= {"409", "422"}
        if "{" in path:
            expected.add("404")
        assert expected <= set(responses), (method, path, expected - set(responses))
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                content = _resolve(document, response)["content"]
                assert list(content) == [PROBLEM], (method, path, status)
    unauthorized = _resolve(document, {"$ref": "#/components/responses/Problem401"})
    assert "WWW-Authenticate" in unauthorized["headers"]


def test_the_main_flows_have_request_and_response_examples_and_there_are_servers(document):
    by_id = {op["operationId"]: op for _, _, op in _operations(document)}
    for name in MAIN_FLOWS:
        operation = by_id[name]
        if "requestBody" in operation:
            assert operation["requestBody"]["content"]["application/json"]["example"], name
        success = [r for s, r in operation["responses"].items() if s.startswith("2")]
        assert any(r["content"]["application/json"].get("example") for r in success), name
    assert document["servers"][0]["url"] == "/"
    assert "Idempotency" in document["info"]["description"]


def test_every_list_is_one_envelope_paged_by_limit_and_cursor(document):
    lists = 0
    for path, method, operation in _operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith("2") or "content" not in response:
                continue
            schema = _resolve(document, response["content"].get("application/json", {}))
            schema = _resolve(document, schema.get("schema", {}))
            assert schema.get("type") != "array", (method, path)  # never a bare array
            if method == "get" and "items" in schema.get("properties", {}):
                lists += 1
                assert "next_cursor" in schema["properties"], path
                names = {p["name"] for p in operation.get("parameters", [])}
                assert {"limit", "cursor"} <= names, path
    assert lists >= 14


# --- the problem types ---------------------------------------------------------------------


def _error_classes(cls=OmniloyalError):
    for sub in cls.__subclasses__():
        yield sub
        yield from _error_classes(sub)


def _slugs_in_the_code() -> set[str]:
    """Every slug an error class declares, read from the source (so a class in a module no
    test imports is found too), plus the HTTP-level ones."""
    found = set(_SLUGS.values())
    root = Path(loyalty.__file__).parent.parent
    for source in root.glob("*/**/*.py"):
        if ".venv" in source.parts or "tests" in source.parts:
            continue
        for match in re.finditer(r'slug, title = "([a-z-]+)"', source.read_text()):
            found.add(match.group(1))
        for match in re.finditer(r'=\s*\d{3},\s*"([a-z-]+)",\s*"', source.read_text()):
            found.add(match.group(1))
    return found


def test_every_problem_type_raised_in_the_code_has_an_entry_and_a_page(app, client):
    slugs = _slugs_in_the_code() | {cls.slug for cls in _error_classes()}
    assert {"member-not-active", "validation-failed", "coupon-unavailable"} <= slugs
    assert slugs <= set(PROBLEM_TYPES), slugs - set(PROBLEM_TYPES)
    index = client.get("/problems")
    assert index.status_code == 200 and index.mimetype == "text/html"
    for slug in slugs:
        entry = PROBLEM_TYPES[slug]
        assert entry.title and entry.description, slug
        assert f'id="{slug}"' in index.get_data(as_text=True)
        page = client.get(f"/problems/{slug}")
        assert page.status_code == 200 and entry.title in page.get_data(as_text=True), slug


def test_a_problem_type_is_a_url_that_resolves_to_its_explanation(client, make):
    response = client.post(
        "/v1/members/999/holds", json={"points": 1}, headers=idem(make.api_key())
    )
    assert response.status_code == 404 and response.json["type"] == "/problems/not-found"
    page = client.get(response.json["type"])
    assert page.status_code == 200 and "Not found" in page.get_data(as_text=True)
    assert client.get("/problems/no-such-type").status_code == 404


def test_one_type_has_one_title_wherever_it_is_raised(client, make):
    schema_error = client.post(
        "/v1/members/1/holds", json={"points": "x"}, headers=idem(make.api_key())
    )
    rule_error = client.post(
        "/v1/members",
        json={"identities": {"email": "a@b.fr"}, "store_id": "NOPE", "channel": "store"},
        headers=idem(make.api_key()),
    )
    for response in (schema_error, rule_error):
        assert response.status_code == 422
        assert response.json["type"] == "/problems/validation-failed"
        assert response.json["title"] == errors.InvalidInput.title


# --- one validation error shape, 415, WWW-Authenticate ---------------------------------------


def test_schema_and_business_rule_errors_share_one_shape(client, make):
    admin = make.api_key()
    member = make.member(points=10)
    schema_error = client.post(
        f"/v1/members/{member.id}/holds", json={"points": "ten"}, headers=idem(admin)
    )
    rule_error = client.post(
        f"/v1/members/{member.id}/holds",
        json={"points": 5, "store_id": "NOPE"},
        headers=idem(admin),
    )
    nested = client.post(
        "/v1/orders",
        json={
            "order_id": "O-1",
            "channel": "online",
            "currency": "EUR",
            "member": {"member_id": member.id},
            "lines": [{"sku": "A", "quantity": 1, "unit_price_minor": -1}],
        },
        headers=idem(admin),
    )
    assert list(error_fields(schema_error.json)) == ["points"]
    assert list(error_fields(rule_error.json)) == ["store_id"]
    assert list(error_fields(nested.json)) == ["lines.0.unit_price_minor"]
    assert "field" not in rule_error.json  # no second, top-level way to name the field


def test_a_body_that_is_not_json_is_a_415_not_a_missing_field_per_field(client, make):
    response = client.post(
        "/v1/members",
        data="email=a@b.fr",
        content_type="application/x-www-form-urlencoded",
        headers=idem(make.api_key()),
    )
    assert response.status_code == 415 and response.mimetype == PROBLEM
    assert response.json["type"] == "/problems/unsupported-media-type"
    assert "application/json" in response.json["detail"]
    assert "errors" not in response.json


def test_a_write_without_a_body_takes_any_content_type(client, make):
    admin = make.api_key(scopes.ADMIN)
    response = client.post("/v1/api-clients/999/revoke", headers=admin, content_type="text/plain")
    assert response.status_code == 404  # not a 415: the operation reads no body


def test_a_401_says_how_to_authenticate(client):
    for headers in ({}, {"Authorization": "Bearer olk_nope_nope"}):
        response = client.get("/v1/me/balance", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_main_flows_describe_every_field_of_what_they_send(document):
    schemas = document["components"]["schemas"]
    main = ("EnrolRequest", "OrderRequest", "MemberRef", "OrderLine", "Validate", "Redeem")
    for name in (*main, "HoldRequest", "CaptureRequest", "RefundRequest", "Balance"):
        properties = schemas[name]["properties"]
        undescribed = [field for field, spec in properties.items() if "description" not in spec]
        assert undescribed == [], (name, undescribed)
