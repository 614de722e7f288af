"""Lockout after repeated failed code look-ups, per API key, per bound store and per member.

Failures that could be guessing (an unknown code, another member's code) are counted in
Redis with a sliding-ish window (a counter that expires `window` seconds after its first
failure). Past the limit the caller is locked out for `lockout` seconds: every validate,
hold, redeem and order with codes answers 429 with Retry-After, whatever the codes. Limit
reached, expired, wrong store and the like are not guesses and are not counted, so a busy
till racing for the last use of a shared code is never locked out.

Who is counted is the caller's own identity, never what the request body claims: the API
key, the store the key is bound to (so every till of a store shares the lockout), and the
member behind a member token. A key that isn't bound to a store can name any store in a
basket; counting that store would let it lock another store's tills out.

Redis down: the lockout fails closed. Every path that takes codes (validate, hold, redeem,
orders with coupon codes, the member app's validate) answers 503 with Retry-After rather
than letting guesses through uncounted; orders without codes are not affected.

Settings (Flask config, with defaults): COUPON_FAILURE_LIMIT (20), COUPON_FAILURE_WINDOW
(600 s), COUPON_LOCKOUT_SECONDS (900 s). Redis holds only these counters; losing them
forgets a lockout, nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import redis
from flask import current_app

from loyalty.coupons.operations import GUESS_REASONS
from loyalty.errors import OmniloyalError, RateLimited, ServiceUnavailable
from loyalty.queue import get_redis

PREFIX = "omniloyal:coupons:"
REDIS_RETRY_AFTER = 5  # seconds: a Redis restart or failover usually takes about this long

T = TypeVar("T")


def _setting(name: str, default: int) -> int:
    return int(current_app.config.get(name, default))


def subjects(
    *, client_id: int | None, bound_store_id: str | None, member_id: int | None
) -> list[str]:
    """The lockout subjects of a caller: its key, the store its key is bound to, or the
    member of a member token. Pass the caller's own identity, never request data."""
    found = []
    if client_id is not None:
        found.append(f"client:{client_id}")
        if bound_store_id is not None:
            found.append(f"store:{bound_store_id}")
    elif member_id is not None:
        found.append(f"member:{member_id}")
    return found


def _fail_closed(func: Callable[..., T]) -> Callable[..., T]:
    """Redis unreachable: refuse with 503 + Retry-After instead of counting nothing."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except redis.RedisError:
            raise ServiceUnavailable(
                "coupon codes can't be checked right now (the guess lockout is unavailable); "
                "retry shortly",
                retry_after=REDIS_RETRY_AFTER,
            ) from None

    return wrapper


@_fail_closed
def ensure_not_locked(names: Iterable[str]) -> None:
    """Raise RateLimited (429, retry_after) when any subject is locked out."""
    keys = [f"{PREFIX}lock:{name}" for name in names]
    if not keys:
        return
    redis_connection = get_redis()
    if not any(redis_connection.mget(keys)):
        return
    retry_after = max((redis_connection.ttl(key) for key in keys), default=1)
    raise RateLimited(
        "too many failed coupon attempts; try again later", retry_after=max(int(retry_after), 1)
    )


@_fail_closed
def record_failures(names: Iterable[str], failures: int = 1) -> None:
    """Count failed look-ups; lock a subject out once it passes the limit."""
    limit = _setting("COUPON_FAILURE_LIMIT", 20)
    window = _setting("COUPON_FAILURE_WINDOW", 600)
    lockout = _setting("COUPON_LOCKOUT_SECONDS", 900)
    redis_connection = get_redis()
    for name in names:
        counter = f"{PREFIX}failures:{name}"
        pipe = redis_connection.pipeline()
        pipe.incrby(counter, failures)
        pipe.expire(counter, window, nx=True)
        count = pipe.execute()[0]
        if count >= limit:
            redis_connection.set(f"{PREFIX}lock:{name}", 1, ex=lockout)
            redis_connection.delete(counter)


def guesses_in(reasons_by_code: dict[str, list[str]]) -> int:
    """How many codes were refused for a reason a guesser gets (unknown, someone else's)."""
    return sum(1 for reasons in reasons_by_code.values() if set(reasons) & GUESS_REASONS)


@contextmanager
def guarded(names: list[str]) -> Iterator[None]:
    """Refuse a locked-out caller, then count the guess-like refusals the body raises.

    Wraps every path that looks codes up and raises on a refused code (redeem, hold,
    orders with coupon codes): the error's `reasons` say which codes were guesses.
    """
    ensure_not_locked(names)
    try:
        yield
    except OmniloyalError as error:
        reasons = error.extra.get("reasons")
        if isinstance(reasons, dict):
            guesses = guesses_in(reasons)
            if guesses:
                record_failures(names, guesses)
        raise
