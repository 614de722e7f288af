"""Request rate limits (the `limits` library): per client IP, per caller, tighter on
sensitive calls.

- per IP (`OMNILOYAL_RATE_LIMIT_PER_IP`): every request without valid credentials
  (anonymous calls and failed authentications), counted before a bad credential is
  refused, so guessing keys or tokens is limited. A request with a valid key or member
  token has its per-caller limit instead: members' phones often share one carrier-NAT
  address, and sparing authenticated calls the per-IP counter keeps them at one limiter
  round trip (two on identify and token minting). Behind reverse proxies set
  OMNILOYAL_PROXY_HOPS so the client's address is read from X-Forwarded-For.
- per caller (`OMNILOYAL_RATE_LIMIT_PER_CALLER`): every request of one API key, or of one
  member's app tokens.
- minting member tokens (`OMNILOYAL_RATE_LIMIT_MEMBER_TOKENS`) and identify
  (`OMNILOYAL_RATE_LIMIT_IDENTIFY`, a look-up by phone or email that could enumerate
  members): a tighter limit per API key.

A breach answers 429 problem+json (`rate-limited`) with Retry-After in seconds. Counters
are fixed windows (one INCR per limit: the cheapest on Redis) in Redis with REDIS_URL set
(shared by every process) and in memory on the embedded default. If Redis is unreachable
the counters fall back to memory per process (the limits still hold, per process) and go
back to Redis after RETRY_REDIS_AFTER seconds; unlike the coupon guess lockout, rate
limiting never refuses a request because Redis is down.

The rules are parsed once at start-up and checked by one before_request hook with the
`limits` strategies directly: Flask-Limiter, which this replaced, resolved and re-parsed
its limits on every request, which cost more CPU than the Redis round trip itself
(bench/flame.py: a third of a balance read).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, g, request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.middleware.proxy_fix import ProxyFix

from loyalty.api import problem_response
from loyalty.config import Settings
from loyalty.errors import RateLimited

log = logging.getLogger(__name__)

# Probes must answer whatever the traffic.
EXEMPT_ENDPOINTS = frozenset({"health.healthz", "health.readyz"})
MEMBER_TOKEN_ENDPOINTS = frozenset({"auth.issue_member_token"})
IDENTIFY_ENDPOINTS = frozenset({"members.identify"})
KEY_PREFIX = "omniloyal:ratelimit"
RETRY_REDIS_AFTER = 30.0  # seconds on in-memory counters after Redis failed


def _caller_key() -> str:
    caller = g.caller
    if caller.client_id is not None:
        return f"client:{caller.client_id}"
    return f"member:{caller.person_id or caller.member_id}"  # one budget per person


def _client_ip() -> str:
    return request.remote_addr or "unknown"


@dataclass(frozen=True)
class Rule:
    """Limits on one kind of request, counted under one key per caller or IP."""

    scope: str
    items: tuple[RateLimitItem, ...]
    applies: Callable[[], bool]
    key: Callable[[], str]


def _anonymous() -> bool:
    return g.get("caller") is None


def _authenticated() -> bool:
    return g.get("caller") is not None


def _authenticated_on(endpoints: frozenset[str]) -> Callable[[], bool]:
    return lambda: _authenticated() and request.endpoint in endpoints


def rules(settings: Settings) -> list[Rule]:
    wanted = (
        ("ip", settings.rate_limit_per_ip, _anonymous, _client_ip),
        ("caller", settings.rate_limit_per_caller, _authenticated, _caller_key),
        (
            "member-tokens",
            settings.rate_limit_member_tokens,
            _authenticated_on(MEMBER_TOKEN_ENDPOINTS),
            _caller_key,
        ),
        (
            "identify",
            settings.rate_limit_identify,
            _authenticated_on(IDENTIFY_ENDPOINTS),
            _caller_key,
        ),
    )
    return [
        Rule(scope, tuple(parse_many(limit)), applies, key)
        for scope, limit, applies, key in wanted
        if limit
    ]


class Counters:
    """Fixed-window counters in Redis, or in this process's memory while Redis fails."""

    def __init__(self, redis_url: str | None) -> None:
        self.memory = FixedWindowRateLimiter(MemoryStorage())
        self.shared = (
            FixedWindowRateLimiter(
                storage_from_string(redis_url, socket_connect_timeout=1, socket_timeout=1)
            )
            if redis_url
            else None
        )
        self.memory_until = 0.0

    def _limiter(self) -> FixedWindowRateLimiter:
        if self.shared is None or time.monotonic() < self.memory_until:
            return self.memory
        return self.shared

    def hit(self, item: RateLimitItem, *identifiers: str) -> tuple[bool, float]:
        """(within the limit, when its window resets as a Unix time)."""
        limiter = self._limiter()
        try:
            allowed = limiter.hit(item, *identifiers)
            reset = limiter.get_window_stats(item, *identifiers).reset_time if not allowed else 0
        except Exception as error:  # Redis unreachable: count in memory for a while
            if limiter is self.memory:
                raise
            log.warning("rate limit counters fall back to memory: %s", type(error).__name__)
            self.memory_until = time.monotonic() + RETRY_REDIS_AFTER
            return self.hit(item, *identifiers)
        return allowed, reset


class RequestLimits:
    def __init__(self, rules: list[Rule], counters: Counters) -> None:
        self.rules = rules
        self.counters = counters

    def check(self) -> Response | None:
        """The before_request hook: None, or the 429 (or a replay) that answers instead."""
        if request.endpoint in EXEMPT_ENDPOINTS:
            return None
        for rule in self.rules:
            if not rule.applies():
                continue
            key = rule.key()
            for item in rule.items:
                allowed, reset = self.counters.hit(item, KEY_PREFIX, rule.scope, key)
                if not allowed:
                    return _breach(item, reset)
        return None


def _breach(item: RateLimitItem, reset: float) -> Response:
    from loyalty.http import earlier_answer

    replay = earlier_answer()  # a retry of a write that took effect replays, limited or not
    if replay is not None:
        return replay
    retry_after = max(1, math.ceil(reset - time.time()))  # when the window resets
    problem = RateLimited(
        f"rate limit exceeded ({item}); retry after {retry_after} s", retry_after=retry_after
    )
    return problem_response(problem.to_problem(), {"Retry-After": str(retry_after)})


def init_rate_limits(app: Flask, settings: Settings) -> RequestLimits:
    """Install the limits' check as the app's next before_request hook.

    Call it after the hook that authenticates (into g.caller) and before the one that
    refuses bad credentials, so failed authentications count against the IP.
    """
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)  # type: ignore[method-assign]
    limits = RequestLimits(rules(settings), Counters(settings.redis_url))
    if limits.rules:
        app.before_request(limits.check)
    app.extensions["omniloyal.rate_limits"] = limits
    return limits
