"""The request edge for writes: idempotency, one commit, rollback on any failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Response, current_app, make_response, request
from werkzeug.exceptions import BadRequest

from loyalty import idempotency, transactions
from loyalty.auth.context import current_caller
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import DatabaseBusy, IdempotencyKeyMissing

F = TypeVar("F", bound=Callable[..., Any])

REPLAY_HEADER = "Idempotent-Replayed"
MAX_JSON_DEPTH = 64  # our bodies nest 4 levels; Python's parser recurses (~1000 levels max)


def _canonical_body() -> bytes:
    raw = request.get_data(cache=True)
    try:
        return json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError, RecursionError):
        return raw  # not (parseable) JSON: fingerprint the bytes; the schema refuses it


def refuse_deeply_nested_json() -> None:
    """A JSON body nested deeper than MAX_JSON_DEPTH is a 400 problem.

    Every JSON parser on the way (the idempotency fingerprint, the schema's) recurses per
    level: a body of 100,000 '[' would be a RecursionError, i.e. a 500. Only a body with
    enough brackets to be that deep is parsed here, so ordinary requests pay nothing.
    """
    if not request.is_json:
        return
    body = request.get_data(cache=True)
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return
    try:
        document = json.loads(body)
    except RecursionError:
        raise BadRequest(f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.") from None
    except ValueError:
        return  # not JSON at all: the schema's parser answers that
    if _depth(document) > MAX_JSON_DEPTH:
        raise BadRequest(f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.")


def _depth(document: Any) -> int:
    deepest, stack = 0, [(document, 1)]
    while stack:  # iterative: the point is not to recurse
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


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
            if key is not None:
                key = idempotency.validate_key(key)

            def attempt() -> Response:
                try:
                    if key is None:
                        response = make_response(view(*args, **kwargs))
                    else:
                        response = _run_once(view, key, args, kwargs)
                    if response.status_code < 400:
                        db.session.commit()
                    else:
                        db.session.rollback()
                    return response
                except BaseException:
                    db.session.rollback()
                    raise

            # A deadlock or serialization failure aborted the whole transaction, the
            # idempotency claim included: run the whole request again, then give up with
            # a 503 the client may retry (with the same key), never a 500.
            try:
                return transactions.retrying(attempt, what=f"{request.method} {request.path}")
            except sa.exc.DBAPIError as error:
                if not transactions.is_retryable(error):
                    raise
                raise DatabaseBusy(
                    "the database was too busy to complete this request; retry it",
                    retry_after=1,
                ) from error

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
