"""The request edge for writes: idempotency, one commit, rollback on any failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Response, current_app, make_response, request

from loyalty import idempotency
from loyalty.auth.context import current_caller
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import IdempotencyKeyMissing

F = TypeVar("F", bound=Callable[..., Any])

REPLAY_HEADER = "Idempotent-Replayed"


def _canonical_body() -> bytes:
    raw = request.get_data(cache=True)
    try:
        return json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        return raw


def write_endpoint(*, key_required: bool = True) -> Callable[[F], F]:
    """Wrap a write handler: claim the Idempotency-Key, run, record the response, commit.

    Place it right below the route decorator so it sees the serialised response.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            key = request.headers.get("Idempotency-Key")
            if key is None and key_required:
                raise IdempotencyKeyMissing(
                    "send an Idempotency-Key header (e.g. a UUID) so retries are safe"
                )
            try:
                if key is None:
                    response = make_response(view(*args, **kwargs))
                else:
                    response = _run_once(view, idempotency.validate_key(key), args, kwargs)
                if response.status_code < 400:
                    db.session.commit()
                else:
                    db.session.rollback()
                return response
            except BaseException:
                db.session.rollback()
                raise

        return wrapper  # type: ignore[return-value]

    return decorate


def _run_once(view: Callable[..., Any], key: str, args: Any, kwargs: Any) -> Response:
    scope = current_caller().idempotency_scope
    print_ = idempotency.fingerprint(request.method, request.path, _canonical_body())
    earlier = idempotency.claim(scope, key, print_, utcnow())
    if earlier is not None and earlier.status_code is not None:
        replay = current_app.response_class(
            earlier.response_body, status=earlier.status_code, mimetype="application/json"
        )
        replay.headers[REPLAY_HEADER] = "true"
        return replay
    response = make_response(view(*args, **kwargs))
    if response.status_code < 400:
        idempotency.record_response(scope, key, response.status_code, response.get_data())
    return response
