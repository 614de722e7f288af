"""Request rate limits (Flask-Limiter): per client IP, per caller, tighter on sensitive calls.

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
live in Redis with REDIS_URL set (shared by every process) and in memory on the embedded
default. If Redis is unreachable the limiter falls back to in-memory counters per process
(the limits still hold, per process) and returns to Redis when it answers again; unlike the
coupon guess lockout, rate limiting never refuses a request because Redis is down.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, g, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded, RequestLimit
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

from loyalty.api import problem_response
from loyalty.config import RATE_LIMIT_SETTINGS, Settings
from loyalty.errors import RateLimited

# Probes must answer whatever the traffic.
EXEMPT_ENDPOINTS = frozenset({"health.healthz", "health.readyz"})
MEMBER_TOKEN_ENDPOINTS = frozenset({"auth.issue_member_token"})
IDENTIFY_ENDPOINTS = frozenset({"members.identify"})


def _caller_key() -> str:
    caller = g.get("caller")
    if caller is None:
        return ""
    if caller.client_id is not None:
        return f"client:{caller.client_id}"
    return f"member:{caller.member_id}"


def _anonymous() -> bool:
    return g.get("caller") is None


def _authenticated() -> bool:
    return g.get("caller") is not None


def _only(endpoints: frozenset[str]):  # type: ignore[no-untyped-def]
    def exempt() -> bool:
        return _anonymous() or request.endpoint not in endpoints

    return exempt


def _breach(limit: RequestLimit) -> Response:
    retry_after = max(1, math.ceil(limit.window[0] - time.time()))  # when the window resets
    problem = RateLimited(
        f"rate limit exceeded ({limit.limit}); retry after {retry_after} s",
        retry_after=retry_after,
    )
    return problem_response(problem.to_problem(), {"Retry-After": str(retry_after)})


def _limits(settings: Settings) -> list[ApplicationLimit]:
    found = []
    if settings.rate_limit_per_ip:
        found.append(
            ApplicationLimit(
                settings.rate_limit_per_ip,
                key_function=get_remote_address,
                scope="ip",
                exempt_when=_authenticated,
            )
        )
    if settings.rate_limit_per_caller:
        found.append(
            ApplicationLimit(
                settings.rate_limit_per_caller,
                key_function=_caller_key,
                scope="caller",
                exempt_when=_anonymous,
            )
        )
    if settings.rate_limit_member_tokens:
        found.append(
            ApplicationLimit(
                settings.rate_limit_member_tokens,
                key_function=_caller_key,
                scope="member-tokens",
                exempt_when=_only(MEMBER_TOKEN_ENDPOINTS),
            )
        )
    if settings.rate_limit_identify:
        found.append(
            ApplicationLimit(
                settings.rate_limit_identify,
                key_function=_caller_key,
                scope="identify",
                exempt_when=_only(IDENTIFY_ENDPOINTS),
            )
        )
    return found


def init_rate_limits(app: Flask, settings: Settings) -> Limiter:
    """Install the limiter's check as the app's next before_request hook.

    Call it after the hook that authenticates (into g.caller) and before the one that
    refuses bad credentials, so failed authentications count against the IP.
    """
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)  # type: ignore[method-assign]
    limiter = Limiter(
        get_remote_address,
        application_limits=_limits(settings),  # type: ignore[arg-type]
        storage_uri=settings.redis_url or "memory://",
        # A Redis that doesn't answer must not hold requests up: fall back quickly.
        storage_options={"socket_connect_timeout": 1, "socket_timeout": 1}
        if settings.redis_url
        else {},
        strategy="fixed-window",  # one counter per window: the cheapest on Redis
        key_prefix="omniloyal:ratelimit",
        in_memory_fallback_enabled=True,
        headers_enabled=False,
        on_breach=_breach,
        enabled=any(getattr(settings, name) for name in RATE_LIMIT_SETTINGS),
    )
    limiter.request_filter(lambda: request.endpoint in EXEMPT_ENDPOINTS)
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, _render)
    return limiter


def _render(error: RateLimitExceeded) -> Response:
    if error.response is not None:
        return error.response
    return problem_response(RateLimited(str(error.description)).to_problem(), {"Retry-After": "1"})
