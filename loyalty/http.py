"""The request edge for writes: idempotency, one commit, rollback on any failure."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Response, current_app, g, make_response, request
from flask_smorest import abort
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from loyalty import idempotency, transactions
from loyalty.auth.context import current_caller
from loyalty.clock import utcnow
from loyalty.db import db, prepare_to_write
from loyalty.errors import DatabaseBusy, IdempotencyKeyMissing
from loyalty.members.models import members_seen, people_now

F = TypeVar("F", bound=Callable[..., Any])

REPLAY_HEADER = "Idempotent-Replayed"
MAX_JSON_DEPTH = 64  # our bodies nest 4 levels; Python's parser recurses (~1000 levels max)


def _canonical_body() -> bytes:
    raw = request.get_data(cache=True)
    try:
        return json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError, RecursionError):
        return raw  # not (parseable) JSON: fingerprint the bytes; the schema refuses it


MAX_INTEGER_DIGITS = 40  # twice a BIGINT's 19 digits: every real value fits, and then some
_LONG_DIGIT_RUN = re.compile(rb"\d{%d}" % (MAX_INTEGER_DIGITS + 1))
TOO_MANY_DIGITS = f"a number of more than {MAX_INTEGER_DIGITS} digits is not accepted"


class _TooLongInteger:
    """Stands in for a JSON integer literal too long to convert (see refuse_deeply_nested_json)."""


def _bounded_int(literal: str) -> int | _TooLongInteger:
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        return _TooLongInteger()
    return int(literal)


def refuse_deeply_nested_json() -> None:
    """Refuse, as problems, the JSON bodies no parser on the way survives: too deep, or
    holding an integer too long to convert (the name is older than the second check).

    This is the one JSON parsing edge, run before anything else parses the body:
    - nested deeper than MAX_JSON_DEPTH: a 400. Every parser recurses per level, so a body
      of 100,000 '[' would be a RecursionError, i.e. a 500;
    - an integer literal of more than MAX_INTEGER_DIGITS digits: a 422 naming the field.
      Python refuses to convert more than 4,300 digits (a ValueError inside json.loads, a
      500), and no field takes more than 19 digits anyway.
    Only a body that could be affected (enough brackets, a long run of digits) is parsed
    here, so ordinary requests pay a byte count and a regex scan.
    """
    if not request.is_json:
        refuse_a_body_that_is_not_json()
        return
    body = request.get_data(cache=True)
    deep = body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH
    if not deep and _LONG_DIGIT_RUN.search(body) is None:
        return
    try:
        document = json.loads(body, parse_int=_bounded_int)
    except RecursionError:
        raise BadRequest(f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.") from None
    except ValueError:
        return  # not JSON at all: the schema's parser answers that
    if deep and _depth(document) > MAX_JSON_DEPTH:
        raise BadRequest(f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.")
    errors = _too_long_integers(document)
    if errors:
        abort(422, messages={"json": errors if isinstance(errors, dict) else [TOO_MANY_DIGITS]})


def takes_json_body(view: Callable[..., Any] | None) -> bool:
    """Whether an endpoint declares a JSON request body (flask-smorest's `arguments`)."""
    declared = getattr(view, "_apidoc", {}).get("arguments", {}).get("parameters", [])
    return any(parameter.get("in") == "json" for parameter in declared)


def refuse_a_body_that_is_not_json() -> None:
    """A 415 for a body sent as anything but JSON to an endpoint that reads JSON.

    Without this a form or text body reaches the schema as no body at all, and the answer
    would be "missing data for required field" on every field: true, but misleading.
    """
    if not (request.content_length or request.headers.get("Transfer-Encoding")):
        return  # no body: the schema says which fields are required
    view = current_app.view_functions.get(request.endpoint or "")
    if takes_json_body(view):
        raise UnsupportedMediaType(
            f"the body is sent as {request.mimetype or 'no media type'!r}; send JSON with "
            "'Content-Type: application/json'"
        )


def _too_long_integers(node: Any) -> Any:
    """Field errors, nested like marshmallow's, for every too long integer in `node`."""
    if isinstance(node, _TooLongInteger):
        return [TOO_MANY_DIGITS]
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    errors = {}
    for name, child in children:
        found = _too_long_integers(child)
        if found:
            errors[str(name)] = found
    return errors


def _depth(document: Any) -> int:
    deepest, stack = 0, [(document, 1)]
    while stack:  # iterative: the point is not to recurse
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


# Called before each run of a write handler; what it returns (if anything) is called with
# the handler's successful, not replayed response, in the write's transaction, before the
# commit. The dashboard's audit log of admin API changes is one (loyalty/dashboard/audit.py).
WriteObserver = Callable[[], Callable[[Response], None] | None]
_write_observers: list[WriteObserver] = []


def observe_writes(observer: WriteObserver) -> WriteObserver:
    _write_observers.append(observer)
    return observer


def write_endpoint(*, key_required: bool = True) -> Callable[[F], F]:
    """Wrap a write handler: claim the Idempotency-Key, run, record the response, commit.

    Place it right below the route decorator so it sees the serialised response.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            prepare_to_write()  # SQLite: from here on, transactions take the write lock
            key = request.headers.get("Idempotency-Key")
            if key is None and key_required:
                raise IdempotencyKeyMissing(
                    "send an Idempotency-Key header (e.g. a UUID) so retries are safe"
                )
            if key is not None:
                key = idempotency.validate_key(key)

            def attempt() -> Response:
                try:
                    finishers = [f for f in (o() for o in _write_observers) if f is not None]
                    if key is None:
                        response = make_response(view(*args, **kwargs))
                    else:
                        response = _run_once(view, key, args, kwargs)
                    if response.status_code < 400:
                        if REPLAY_HEADER not in response.headers:
                            for finish in finishers:
                                finish(response)
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

        # Read by loyalty.contract: the document declares the header and the 428.
        wrapper._idempotency = "required" if key_required else "optional"  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def replayed(body: Any, status: int) -> tuple[Any, int, dict[str, str]]:
    """The answer to a repeat of a write that already took effect (same order id, a second
    cancel or capture...): the first status and the resulting object, marked like a replay
    by Idempotency-Key, so every kind of repeat looks the same to a client."""
    return body, status, {REPLAY_HEADER: "true"}


def _replay_of(earlier: idempotency.IdempotencyRecord) -> Response:
    replay = current_app.response_class(
        earlier.response_body, status=earlier.status_code, mimetype="application/json"
    )
    replay.headers[REPLAY_HEADER] = "true"
    return replay


# Per endpoint, how to find a repeat of a write that took effect without an Idempotency-Key
# (an order posted again with its order id): returns the replay or None.
_replay_finders: dict[str, Callable[[], Response | None]] = {}


def replay_finder(endpoint: str) -> Callable[[Callable[[], Response | None]], Any]:
    """Register how a write endpoint recognises a repeat by its content (see `_replay_finders`),
    so a repeat refused before its handler (rate limited) still gets its first answer."""

    def register(func: Callable[[], Response | None]) -> Callable[[], Response | None]:
        _replay_finders[endpoint] = func
        return func

    return register


def earlier_answer() -> Response | None:
    """The first answer to this very write, when it already took effect: by its
    Idempotency-Key (same fingerprint), else by the endpoint's own replay rule (an order
    id). For checks that refuse a request before its handler runs (the rate limiter): a
    retry of a write that succeeded gets the first result, never a 429 (the one replay
    rule). None for reads, first attempts and anything not replayable."""
    caller = g.get("caller")
    if request.method in {"GET", "HEAD", "OPTIONS"} or caller is None:
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "_idempotency", None) is None:
        return None
    key = request.headers.get("Idempotency-Key")
    try:
        if key is not None:
            print_ = idempotency.fingerprint(request.method, request.path, _canonical_body())
            earlier = idempotency.stored_response(
                caller.idempotency_scope, idempotency.validate_key(key), print_
            )
            if earlier is not None:
                return _replay_of(earlier)
        finder = _replay_finders.get(request.endpoint or "")
        return finder() if finder is not None else None
    except Exception:
        return None
    finally:
        db.session.rollback()  # read only: end the read transaction the lookup opened


def _run_once(view: Callable[..., Any], key: str, args: Any, kwargs: Any) -> Response:
    scope = current_caller().idempotency_scope
    print_ = idempotency.fingerprint(request.method, request.path, _canonical_body())
    earlier = idempotency.claim(scope, key, print_, utcnow())
    if earlier is not None and earlier.status_code is not None:
        return _replay_of(earlier)
    response = make_response(view(*args, **kwargs))
    if response.status_code < 400:
        idempotency.record_response(
            scope,
            key,
            response.status_code,
            response.get_data(),
            member_id=_member_concerned(current_caller().member_id),
        )
    return response


def _member_concerned(caller_member_id: int | None) -> int | None:
    """The person whose data the response may show: the member calling with their token,
    else the one person the write loaded or created (after a merge, the two ids it loaded
    are one person). A write that touches several people (a referral, coupons issued to
    many) shows none of their personal data, only ids, and is linked to nobody."""
    if caller_member_id is not None:
        return caller_member_id
    people = members_seen(db.session)
    if len(people) > 1:  # a merge loaded both before folding one into the other
        people = people_now(people)
    return people.pop() if len(people) == 1 else None
