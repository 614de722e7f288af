"""Errors the API fuzzer (tests/test_api_fuzz.py) found outside the problem+json contract,
and the last line of defence: an unhandled exception is a logged 500 problem."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty.app import create_app
from tests.factories import error_fields, idem

PROBLEM = "application/problem+json"
BEYOND_BIGINT = 2**63


def test_an_unhandled_exception_is_a_500_problem_with_the_request_id_and_is_logged(
    tmp_path, caplog
):
    app = create_app(
        {
            "database_url": f"sqlite:///{tmp_path / 'bug.db'}",
            "secret_key": "s" * 40,
            "run_embedded_worker": False,
        }
    )

    @app.route("/bug")
    def bug() -> Any:
        raise RuntimeError("a bug, not bad input")

    logging.getLogger().addHandler(caplog.handler)  # create_app replaced the root handlers
    response = app.test_client().get("/bug", headers={"X-Request-ID": "req-bug-1"})

    assert response.status_code == 500 and response.mimetype == PROBLEM
    assert response.json["status"] == 500
    assert response.json["type"].endswith("/internal-error")
    assert response.json["request_id"] == response.headers["X-Request-ID"] == "req-bug-1"
    assert "a bug" not in response.get_data(as_text=True)  # no internals leak to the client
    [logged] = [r for r in caplog.records if r.getMessage() == "unhandled exception"]
    assert logged.levelno == logging.ERROR and logged.request_id == "req-bug-1"
    assert logged.exc_info[0] is RuntimeError


def test_a_database_error_is_logged_without_the_values_the_driver_quotes(tmp_path, caplog):
    """PostgreSQL's error text quotes the row ("Key (kind, value)=(email, ...) already
    exists"): the log names the error, SQLSTATE, statement and stack, not the values."""
    app = create_app(
        {
            "database_url": f"sqlite:///{tmp_path / 'bug.db'}",
            "secret_key": "s" * 40,
            "run_embedded_worker": False,
        }
    )
    email = "jane.doe@example.org"

    class UniqueViolation(Exception):
        sqlstate = "23505"

    @app.route("/db-bug")
    def db_bug() -> Any:
        raise sa.exc.IntegrityError(
            "INSERT INTO member_identities (kind, value) VALUES (?, ?)",
            ("email", email),
            UniqueViolation(f"duplicate key\nDETAIL: Key (kind, value)=(email, {email}) exists"),
            hide_parameters=True,
        )

    logging.getLogger().addHandler(caplog.handler)
    response = app.test_client().get("/db-bug")

    assert response.status_code == 500
    [logged] = [r for r in caplog.records if r.getMessage() == "unhandled exception"]
    assert (logged.db_error, logged.sqlstate) == ("UniqueViolation", "23505")
    assert logged.statement.startswith("INSERT INTO member_identities")
    assert "db_bug" in logged.stack
    assert email not in caplog.text and email not in repr(logged.__dict__)


def test_a_body_that_is_not_json_is_a_400_problem_without_field_errors(client, make):
    member = make.member()
    response = client.post(
        f"/v1/members/{member.id}/holds",
        data="{not json",
        content_type="application/json",
        headers=idem(make.api_key()),
    )
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert "errors" not in response.json  # `errors` is always a field -> messages object
    assert response.json["detail"]


@pytest.mark.parametrize(
    "path", [f"/v1/members/{BEYOND_BIGINT}", f"/v1/members/{10**30}/ledger", f"/v1/holds/{2**64}"]
)
def test_a_path_id_beyond_bigint_is_a_404_problem_not_a_database_overflow(client, make, path):
    response = client.get(path, headers=make.api_key())
    assert response.status_code == 404 and response.mimetype == PROBLEM


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/member-tokens", {"member_id": BEYOND_BIGINT}, "member_id"),
        ("/v1/coupons/offers/1/issue", {"member_ids": [1, BEYOND_BIGINT]}, "member_ids"),
        (
            "/v1/coupons/rewards",
            {"offer_id": BEYOND_BIGINT, "name": "R", "points_cost": 1},
            "offer_id",
        ),
        (
            "/v1/members/1/merge",
            {"merged_member_id": BEYOND_BIGINT, "reason": "dup"},
            "merged_member_id",
        ),
    ],
)
def test_an_id_beyond_bigint_in_a_body_is_a_422_on_that_field(client, make, path, body, field):
    response = client.post(path, json=body, headers=idem(make.api_key()))
    assert response.status_code == 422 and response.mimetype == PROBLEM, response.json
    assert field in {path.split(".")[0] for path in error_fields(response.json)}


def test_error_responses_are_documented_as_problem_json_with_extension_members(client):
    document = client.get("/openapi.json").json
    default_error = document["components"]["responses"]["DEFAULT_ERROR"]
    assert list(default_error["content"]) == [PROBLEM]
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status"}
    assert problem["additionalProperties"] is True  # RFC 9457 extension members


def test_every_numeric_bound_in_the_openapi_document_is_a_number(client):
    document = client.get("/openapi.json").json
    bad: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                    if not isinstance(value, int | float) or isinstance(value, bool):
                        bad.append(f"{where}.{key} = {value!r}")
                else:
                    walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{where}[{index}]")

    walk(document, "")
    assert bad == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/api-clients", {"name": "T", "scopes": ["admin"], "store_id": "S\x001"}, "store_id"),
        ("/v1/stores", {"id": "S1", "name": "a\x00b", "timezone": "Europe/Paris"}, "name"),
        ("/v1/members", {"identities": {"email": "a\x00@example.com"}}, "identities"),
    ],
)
def test_a_nul_character_in_any_text_field_is_a_422_on_that_field(client, make, path, body, field):
    # PostgreSQL text can't hold NUL: it used to reach the driver and answer a 500.
    response = client.post(path, json=body, headers=idem(make.api_key()))
    assert response.status_code == 422 and response.mimetype == PROBLEM, response.json
    assert field in error_fields(response.json)


def test_a_nul_character_in_a_query_string_or_path_segment_is_a_4xx_problem(client, make):
    headers = make.api_key()
    query = client.get("/v1/stores", query_string={"region": "north\x00"}, headers=headers)
    assert query.status_code == 422 and "region" in error_fields(query.json)
    for path in ("/v1/stores/S%001", "/v1/orders/O%001"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404 and response.mimetype == PROBLEM, path


@pytest.mark.parametrize("depth", [65, 100_000])
def test_json_nested_too_deep_is_a_400_problem(client, make, depth):
    # 100,000 levels used to be a RecursionError (a 500) in the JSON parser.
    response = client.post(
        "/v1/orders",
        data="[" * depth + "]" * depth,
        content_type="application/json",
        headers=idem(make.api_key()),
    )
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert "nests deeper" in response.json["detail"]


def test_a_deeply_nested_body_sent_as_text_is_a_4xx_problem(client, make):
    member = make.member(points=10)
    response = client.post(
        f"/v1/members/{member.id}/holds",
        data="[" * 100_000,
        content_type="text/plain",
        headers=idem(make.api_key()),
    )
    assert 400 <= response.status_code < 500 and response.mimetype == PROBLEM


def test_json_with_many_brackets_but_little_depth_is_parsed_normally(client, make):
    member = make.member(points=100)
    response = client.post(
        f"/v1/members/{member.id}/holds",
        data='{"points": 1, "reference": "' + "[{" * 60 + '"}',
        content_type="application/json",
        headers=idem(make.api_key()),
    )
    assert response.status_code == 201, response.json
