"""The OpenAPI document, completed from what each endpoint's decorators declare.

flask-smorest documents bodies, parameters and success responses. What the code knows
besides is added here, once, for every operation, so the document can't drift from it:
- who calls it (`@requires(scope)`: an API key with that scope; `@requires_member`: a
  member token) -> `security` with the scope, and a line of the description;
- whether it takes `Idempotency-Key` (`@write_endpoint`) and whether it is required -> a
  header parameter, a line of the description, and 428 / 410 among its responses;
- every problem it can answer (401, 403, 404, 409, 422, 428, 429, 503...) as
  application/problem+json, each status a shared response listing the problem types;
- an `operationId` (the handler's name) and request/response examples on the main flows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from apispec import APISpec
from flask import Flask

from loyalty.contract_examples import EXAMPLES
from loyalty.contract_glossary import FIELDS
from loyalty.errors import PROBLEM_TYPES

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# The problem types each status can carry, for the shared responses' descriptions.
STATUS_PROBLEMS: dict[int, str] = {
    400: "The body is not valid JSON, or nests too deep.",
    401: "No credential, or one that is malformed, unknown, revoked or expired "
    "(`not-authenticated`). The response carries `WWW-Authenticate: Bearer`.",
    403: "The credential may not do this: an API key without the scope, a member token on "
    "an API-key operation or the reverse, a store-bound key acting for another store "
    "(`forbidden`).",
    404: "Nothing the caller may see exists under that id (`not-found`); other owners' "
    "objects answer 404 too.",
    409: "The request is valid but clashes with the current state: `member-not-active`, "
    "`insufficient-points`, `order-id-reused`, `coupon-unavailable`, ... (see `type`).",
    410: "The Idempotency-Key's first request succeeded, but its response concerned a member "
    "since erased: the write is not run again and the old body is gone (`response-erased`).",
    413: "The body is larger than the service accepts (`body-too-large`).",
    415: "The body is not JSON (`unsupported-media-type`): send `Content-Type: application/json`.",
    422: "Invalid input (`validation-failed`): `errors` lists each field at fault as "
    "`{field, message}`, whether the schema or a business rule refused it. Also "
    "`idempotency-key-reused` (the key was used with another body) and, on coupons, "
    "`coupon-not-applicable` with `reason`/`reasons`.",
    428: "This write requires an `Idempotency-Key` header (`idempotency-key-required`).",
    429: "Too many requests (`rate-limited`); retry after `Retry-After` seconds.",
    503: "Refused on purpose while a dependency is down or the database too busy "
    "(`service-unavailable`, `database-busy`); retry after `Retry-After` seconds with the "
    "same Idempotency-Key.",
}

RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 0},
}
STATUS_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "How to authenticate: `Bearer` (an API key or a member token).",
            "schema": {"type": "string"},
        }
    },
    429: {"Retry-After": RETRY_AFTER},
    503: {"Retry-After": RETRY_AFTER},
}

# Operations that answer 503 besides writes: the coupon guess lockout fails closed when
# Redis is down (loyalty.coupons.abuse).
LOCKOUT_GUARDED = frozenset({"validate_codes", "my_validate", "redeem", "hold"})

REPLAYED_HEADER = {
    "description": "`true` when this answers a repeat of a write that already took effect "
    "(the same Idempotency-Key, order id or refund id; a second cancel or capture): the "
    "first status and the resulting object, and nothing was changed again.",
    "schema": {"type": "string", "enum": ["true"]},
}

IDEMPOTENCY_REQUIRED = (
    "**Idempotency-Key: required.** Send a unique key per attempt (e.g. a UUID) and the "
    "same key on every retry: a retry returns the first response (same status and body, "
    "with `Idempotent-Replayed: true`) and has no second effect. Without the header: 428."
)
IDEMPOTENCY_OPTIONAL = (
    "**Idempotency-Key: accepted, not required.** Repeating this write changes nothing "
    "more (it sets a final state); with a key a retry is replayed like any other write."
)
NOT_A_WRITE = "**Idempotency-Key: not used**: this call changes nothing, repeat it freely."


def problem_response(status: int, phrase: str) -> dict[str, Any]:
    """The shared response of one error status (a component, referenced by operations)."""
    response: dict[str, Any] = {
        "description": STATUS_PROBLEMS.get(status, phrase),
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }
    if status in STATUS_HEADERS:
        response["headers"] = STATUS_HEADERS[status]
    return response


def complete_document(app: Flask, spec: APISpec) -> None:
    """Complete every operation of `spec` from the decorators of its Flask view."""
    paths: dict[str, dict[str, Any]] = spec._paths  # apispec keeps them here until to_dict
    for rule in app.url_map.iter_rules():
        operations = paths.get(_openapi_path(rule.rule))
        view = app.view_functions.get(rule.endpoint)
        if not operations or view is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = operations.get(method.lower())
            if operation is not None:
                _complete_operation(spec, operation, view, method, rule.rule)
    describe_fields(spec)


def describe_fields(spec: APISpec) -> None:
    """Give every component schema's undescribed fields the glossary's meaning."""
    for schema in spec.components.schemas.values():
        for name, field in schema.get("properties", {}).items():
            if name in FIELDS and isinstance(field, dict) and "description" not in field:
                field["description"] = FIELDS[name]


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _complete_operation(
    spec: APISpec, operation: dict[str, Any], view: Callable[..., Any], method: str, rule: str
) -> None:
    name = view.__name__
    operation["operationId"] = name
    scope = getattr(view, "_required_scope", None)
    idempotency = getattr(view, "_idempotency", None)
    lines = [operation.get("description", "").strip()]
    if scope is None:
        operation["security"] = []
        lines.append("**Caller:** anyone; no credential needed.")
    elif scope == "member":
        operation["security"] = [{"MemberToken": []}]
        lines.append(
            "**Caller:** the member app, with a member token (`Authorization: Bearer omt_...`); "
            "it acts on the token's member only. API keys get 403."
        )
    else:
        operation["security"] = [{"ApiKey": [scope]}]
        lines.append(
            f"**Caller:** an API key with the `{scope}` scope (`Authorization: Bearer "
            "olk_...`). Member tokens get 403."
        )
    if idempotency is not None:
        operation.setdefault("parameters", []).append(_idempotency_parameter(idempotency))
        for status, response in operation.get("responses", {}).items():
            if status.startswith("2") and isinstance(response, dict):
                response.setdefault("headers", {})["Idempotent-Replayed"] = REPLAYED_HEADER
        lines.append(IDEMPOTENCY_REQUIRED if idempotency == "required" else IDEMPOTENCY_OPTIONAL)
    elif method in WRITE_METHODS and scope is not None:
        lines.append(NOT_A_WRITE)
    operation["description"] = "\n\n".join(line for line in lines if line)
    if "summary" not in operation:
        operation["summary"] = name.replace("_", " ").capitalize()
    responses = operation.setdefault("responses", {})
    for status in _error_statuses(operation, method, rule, scope, idempotency, name):
        responses[str(status)] = spec.components.get_ref("response", f"Problem{status}")
    example = EXAMPLES.get(name)
    if example is not None:
        _add_examples(operation, example)


def _idempotency_parameter(idempotency: str) -> dict[str, Any]:
    required = idempotency == "required"
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": required,
        "description": (
            "A unique key per attempt (1-255 printable ASCII characters, e.g. a UUID), "
            "reused on every retry of that attempt. "
            + ("Required: without it, 428." if required else "Optional.")
            + " Keys are kept 48 hours, per API client (or per member for member tokens)."
        ),
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        "example": "4f1c2a9e-7d3b-4c55-9a61-0b2f8e6d1c3a",
    }


def _error_statuses(
    operation: dict[str, Any],
    method: str,
    rule: str,
    scope: str | None,
    idempotency: str | None,
    name: str,
) -> list[int]:
    if scope is None:
        return []  # health checks: documented by hand
    has_body = "requestBody" in operation
    parameters = [p for p in operation.get("parameters", []) if isinstance(p, dict)]
    filters = [p for p in parameters if p.get("in") == "query"]
    statuses = [401, 403, 429]
    names_something = (
        "<" in rule or has_body or any(p.get("name") not in ("limit", "cursor") for p in filters)
    )
    if names_something:
        statuses.append(404)
    if has_body or filters or method in WRITE_METHODS:
        statuses.append(422)
    if has_body:
        statuses += [400, 413, 415]
    if method in WRITE_METHODS and idempotency is not None:
        statuses += [409, 503]
        statuses.append(410)
        if idempotency == "required":
            statuses.append(428)
    elif method in WRITE_METHODS:
        statuses.append(409)
    if name in LOCKOUT_GUARDED:
        statuses.append(503)
    return sorted(set(statuses))


def _add_examples(operation: dict[str, Any], example: dict[str, Any]) -> None:
    request = example.get("request")
    if request is not None and "requestBody" in operation:
        for media in operation["requestBody"].get("content", {}).values():
            media["example"] = request
    for status, body in example.get("responses", {}).items():
        response = operation.get("responses", {}).get(str(status))
        if isinstance(response, dict) and "content" in response:
            for media in response["content"].values():
                media["example"] = body


def problem_types_index() -> list[dict[str, Any]]:
    """Every problem type, for /problems and tests."""
    return [
        {"slug": t.slug, "status": t.status, "title": t.title, "description": t.description}
        for t in sorted(PROBLEM_TYPES.values(), key=lambda t: (t.status, t.slug))
    ]
