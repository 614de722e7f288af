"""flask-smorest's Api, answering every HTTP error as RFC 9457 problem+json."""

from __future__ import annotations

import http
from typing import Any

from flask import Response, g, json
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException

from loyalty.errors import PROBLEM_BASE, OmniloyalError
from loyalty.schemas import ProblemSchema

PROBLEM_MIME = "application/problem+json"

_SLUGS = {
    400: "bad-request",
    401: "not-authenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "validation-failed",
    429: "rate-limited",
    500: "internal-error",
}


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
        problem: dict[str, Any] = {
            "type": PROBLEM_BASE + _SLUGS.get(status, "http-error"),
            "title": error.name,
            "status": status,
            "detail": error.description,
        }
        data = getattr(error, "data", None) or {}
        messages = data.get("messages")
        if messages:
            # webargs nests field errors under the location ("json", "query"...).
            errors = _flatten_locations(messages)
            if isinstance(errors, dict):
                problem["detail"] = "The request has invalid fields; see `errors`."
                problem["errors"] = errors
            else:  # a body that isn't JSON at all: no field to blame
                problem["detail"] = " ".join(map(str, errors))
        headers = dict(data.get("headers") or {})
        return problem_response(problem, headers)


def _flatten_locations(messages: dict[str, Any]) -> dict[str, Any]:
    if len(messages) == 1:
        return next(iter(messages.values()))
    return messages
