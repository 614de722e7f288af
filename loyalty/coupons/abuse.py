"""Lockout after repeated failed code look-ups, per API key, per store and per member.

Failures that could be guessing (an unknown code, another member's code) are counted in
Redis with a sliding-ish window (a counter that expires `window` seconds after its first
failure). Past the limit the caller is locked out for `lockout` seconds: every validate,
hold and redeem answers 429 with Retry-After, whatever the codes. Limit reached, expired,
wrong store and the like are not guesses and are not counted, so a busy till racing for
the last use of a shared code is never locked out.

Settings (Flask config, with defaults): COUPON_FAILURE_LIMIT (20), COUPON_FAILURE_WINDOW
(600 s), COUPON_LOCKOUT_SECONDS (900 s). Redis holds only these counters; losing them
forgets a lockout, nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import current_app

from loyalty.errors import RateLimited
from loyalty.queue import get_redis

PREFIX = "omniloyal:coupons:"


def _setting(name: str, default: int) -> int:
    return int(current_app.config.get(name, default))


def subjects(*, client_id: int | None, store_id: str | None, member_id: int | None) -> list[str]:
    found = []
    if client_id is not None:
        found.append(f"client:{client_id}")
    if store_id is not None:
        found.append(f"store:{store_id}")
    if member_id is not None and client_id is None:
        found.append(f"member:{member_id}")
    return found


def ensure_not_locked(names: Iterable[str]) -> None:
    """Raise RateLimited (429, retry_after) when any subject is locked out."""
    keys = [f"{PREFIX}lock:{name}" for name in names]
    if not keys:
        return
    redis = get_redis()
    if not any(redis.mget(keys)):
        return
    retry_after = max((redis.ttl(key) for key in keys), default=1)
    raise RateLimited(
        "too many failed coupon attempts; try again later", retry_after=max(int(retry_after), 1)
    )


def record_failures(names: Iterable[str], failures: int = 1) -> None:
    """Count failed look-ups; lock a subject out once it passes the limit."""
    limit = _setting("COUPON_FAILURE_LIMIT", 20)
    window = _setting("COUPON_FAILURE_WINDOW", 600)
    lockout = _setting("COUPON_LOCKOUT_SECONDS", 900)
    redis = get_redis()
    for name in names:
        counter = f"{PREFIX}failures:{name}"
        pipe = redis.pipeline()
        pipe.incrby(counter, failures)
        pipe.expire(counter, window, nx=True)
        count = pipe.execute()[0]
        if count >= limit:
            redis.set(f"{PREFIX}lock:{name}", 1, ex=lockout)
            redis.delete(counter)
