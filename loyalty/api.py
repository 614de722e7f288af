"""flask-smorest's Api, answering every HTTP error as RFC 9457 problem+json."""

from __future__ import annotations

import http
from functools import cache
from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Response, g, json
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from loyalty.errors import (
    PROBLEM_BASE,
    PROBLEM_TYPES,
    InvalidInput,
    OmniloyalError,
    field_error,
    register_problem_type,
)
from loyalty.schemas import ProblemSchema

PROBLEM_MIME = "application/problem+json"


@cache
def _schema_instance(schema_class: type[ma.Schema]) -> ma.Schema:
    return schema_class()


class _ReusingParser(FlaskParser):
    """webargs builds a new schema for every request given a class (its fields deep-copied:
    about a tenth of a small write's CPU). Our request schemas keep no state between loads,
    so one instance per class serves every request."""

    def _get_schema(self, argmap: Any, req: Any) -> ma.Schema:
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            return _schema_instance(argmap)
        return super()._get_schema(argmap, req)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, parsing with one schema instance per request schema."""

    ARGUMENTS_PARSER = _ReusingParser()


# The problem types of HTTP-level errors (werkzeug's, webargs' 422), by status. The types
# that also have an OmniloyalError (401, 403, 404, 422, 429) share its title.
_SLUGS = {
    400: "bad-request",
    401: "not-authenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: InvalidInput.slug,
    429: "rate-limited",
    500: "internal-error",
}
register_problem_type(
    "method-not-allowed",
    405,
    "Method not allowed",
    "The path exists but not with this HTTP method; the `Allow` header lists those it takes.",
)
register_problem_type(
    "body-too-large",
    413,
    "Body too large",
    "The request body is larger than the service accepts (OMNILOYAL_MAX_BODY_BYTES, 1 MB "
    "by default). Send fewer items per call (large imports go through the CLI).",
)
register_problem_type(
    "unsupported-media-type",
    415,
    "Unsupported media type",
    "The request has a body that is not JSON. Every request body is a JSON object sent with "
    "`Content-Type: application/json`.",
)
register_problem_type(
    "internal-error",
    500,
    "Internal error",
    "A bug: nothing was changed (the transaction was rolled back). The `request_id` matches "
    "the server's log line; report it.",
)
register_problem_type(
    "http-error",
    400,
    "HTTP error",
    "Another HTTP-level refusal; `status` and `detail` say which.",
)

# A 401 says how to authenticate (RFC 9110 section 11.6.1): both credentials are bearer.
WWW_AUTHENTICATE = 'Bearer realm="omniloyal"'


def problem_response(problem: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    request_id = getattr(g, "request_id", None)
    if request_id:
        problem.setdefault("request_id", request_id)
    response = Response(json.dumps(problem), status=problem["status"], mimetype=PROBLEM_MIME)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def domain_error_response(error: OmniloyalError) -> Response:
    headers = {}
    if "retry_after" in error.extra:
        headers["Retry-After"] = str(error.extra["retry_after"])
    if error.status == 401:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return problem_response(error.to_problem(), headers)


class ProblemApi(Api):
    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        """Document error responses as what they are on the wire: application/problem+json.

        flask-smorest registers them under its default (application/json) media type.
        """
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_MIME)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_MIME)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, default, lazy=True)

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        status = error.code or 500
        slug = _SLUGS.get(status, "http-error")
        known = PROBLEM_TYPES.get(slug)
        problem: dict[str, Any] = {
            "type": PROBLEM_BASE + slug,
            "title": known.title if known else error.name,
            "status": status,
            "detail": error.description,
        }
        data = getattr(error, "data", None) or {}
        messages = data.get("messages")
        if messages:
            errors = field_errors(messages)
            if status == 422:
                problem["detail"] = "The request has invalid fields; see `errors`."
                problem["errors"] = errors
            else:  # a body that isn't JSON at all: no field to blame
                problem["detail"] = " ".join(entry["message"] for entry in errors)
        elif status == 422:
            problem["errors"] = []
        headers = dict(data.get("headers") or {})
        if status == 401:
            headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        return problem_response(problem, headers)


def field_errors(messages: dict[str, Any]) -> list[dict[str, str]]:
    """webargs' messages ({location: marshmallow's nested dict}) as one flat list of
    {field, message}, the field a dotted path (`lines.0.sku`); "" for the whole body."""
    errors: list[dict[str, str]] = []
    for nested in messages.values():  # the location ("json", "query"...) is not a field
        _collect(nested, "", errors)
    return errors


def _collect(node: Any, path: str, errors: list[dict[str, str]]) -> None:
    if isinstance(node, dict):
        for name, child in node.items():
            # marshmallow puts errors about the object itself under `_schema`
            child_path = path if name == "_schema" else _join(path, str(name))
            _collect(child, child_path, errors)
    elif isinstance(node, list | tuple):
        for item in node:
            _collect(item, path, errors)
    else:
        errors.append(field_error(path, str(node)))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
