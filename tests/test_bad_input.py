"""Input no handler can store is refused as a 4xx problem, on every write endpoint.

Walks the OpenAPI document: every operation with a JSON body gets, in its first text or
number field, what used to be a 500 (a lone surrogate; an integer of 5,000 digits).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from loyalty.auth import scopes
from tests.earning.factories import order_body
from tests.factories import Factories, error_fields, idem

PROBLEM = "application/problem+json"
HUGE_INTEGER = "9" * 5000


def _json_write_operations(app: Flask) -> list[tuple[str, str, dict[str, Any], bool]]:
    """(method, path, request body schema, for members) of every operation taking JSON."""
    document = app.test_client().get("/openapi.json").json
    components = document["components"]["schemas"]
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                schema = content["application/json"]["schema"]
                if "$ref" in schema:
                    schema = components[schema["$ref"].rsplit("/", 1)[1]]
                for_members = {"MemberToken": []} in operation.get("security", [])
                found.append((method.upper(), path, schema, for_members))
    return found


def _field_of_type(schema: dict[str, Any], wanted: str) -> str | None:
    for name, prop in schema.get("properties", {}).items():
        types = prop.get("type", [])
        if wanted in ([types] if isinstance(types, str) else types):
            return name
    return None


def _send(client: FlaskClient, method: str, path: str, raw: str, headers: dict[str, str]) -> Any:
    url = re.sub(r"\{[^}]+\}", "1", path)
    return client.open(
        url, method=method, data=raw, content_type="application/json", headers=idem(headers)
    )


@pytest.fixture
def callers(make: Factories) -> tuple[dict[str, str], dict[str, str]]:
    member = make.member(points=100)
    assert member.id == 1  # path ids are all 1: the member and other rows exist or not
    return make.api_key(), make.member_token(member.id)


def test_every_text_field_refuses_a_lone_surrogate_with_a_422_naming_it(app, client, callers):
    admin, member = callers
    checked = 0
    for method, path, schema, for_members in _json_write_operations(app):
        field = _field_of_type(schema, "string")
        if field is None:
            continue
        raw = '{"' + field + '": "\\ud800"}'
        response = _send(client, method, path, raw, member if for_members else admin)
        assert response.status_code == 422, (method, path, response.get_data())
        assert response.mimetype == PROBLEM
        assert "Unicode" in error_fields(response.json)[field][0], (method, path)
        checked += 1
    assert checked >= 30  # the walk reached the API, not an empty document


def test_every_number_field_refuses_a_5000_digit_integer_with_a_422_naming_it(app, client, callers):
    admin, member = callers
    checked = 0
    for method, path, schema, for_members in _json_write_operations(app):
        field = _field_of_type(schema, "integer")
        if field is None:
            continue
        raw = '{"' + field + '": ' + HUGE_INTEGER + "}"
        response = _send(client, method, path, raw, member if for_members else admin)
        assert response.status_code == 422, (method, path, response.get_data()[:300])
        assert response.mimetype == PROBLEM
        assert "digits" in error_fields(response.json)[field][0], (method, path)
        checked += 1
    assert checked >= 10


def test_a_huge_quantity_deep_in_an_order_is_named_by_its_path(client, make):
    pos = make.api_key(*scopes.POS)
    member = make.member()
    body = order_body({"member_id": member.id}, ("SKU1", None, 123454321, 100), order_id="O-1")
    raw = json.dumps(body).replace("123454321", HUGE_INTEGER)
    response = client.post(
        "/v1/orders", data=raw, content_type="application/json", headers=idem(pos)
    )
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert list(error_fields(response.json)) == ["lines.0.quantity"]
    assert "digits" in error_fields(response.json)["lines.0.quantity"][0]


def test_a_hold_of_5000_digits_and_a_name_with_a_lone_surrogate_are_422s(client, make):
    admin = make.api_key()
    member = make.member(points=10)
    hold = client.post(
        f"/v1/members/{member.id}/holds",
        data='{"points": ' + HUGE_INTEGER + "}",
        content_type="application/json",
        headers=idem(admin),
    )
    assert hold.status_code == 422 and "points" in error_fields(hold.json)
    renamed = client.patch(
        f"/v1/members/{member.id}",
        data='{"name": "L\\ud800a", "attributes": {"\\udfff": "x"}}',
        content_type="application/json",
        headers=idem(admin),
    )
    assert renamed.status_code == 422
    assert set(error_fields(renamed.json)) == {"name", "attributes"}


def test_long_digit_strings_and_numbers_that_fit_are_still_accepted(client, make):
    """The guard is about integer literals: text of digits passes, as do ordinary numbers."""
    admin = make.api_key()
    member = make.member(points=10)
    renamed = client.patch(
        f"/v1/members/{member.id}",
        json={"name": "1" * 60, "attributes": {"ref": "9" * 100}},
        headers=idem(admin),
    )
    assert renamed.status_code == 200, renamed.json
    too_big = client.post(
        f"/v1/members/{member.id}/holds", json={"points": 10**30}, headers=idem(admin)
    )
    assert too_big.status_code == 422 and "digits" not in error_fields(too_big.json)["points"][0]
