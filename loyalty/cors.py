"""CORS for the member app's web front end, and for nothing else.

A browser page on an origin listed in OMNILOYAL_CORS_ORIGINS may call:

- the member's own endpoints, `/v1/me` and `/v1/me/...`, with a member token;
- the one-time-code login, `/v1/login-codes` and `/v1/login-codes/verify`, with a key that
  holds only `member-login` (a publishable key: it can ask for a code and exchange a code
  for a token, limited per client IP, destination and country, and nothing else).

Every other endpoint (API keys with admin, POS, orders, coupons or `member-tokens:issue`
scopes) answers without CORS headers, so a browser refuses to hand its answers to a page on
another origin: those keys stay on servers. Credentials travel in the `Authorization`
header, never in cookies, so no answer carries `Access-Control-Allow-Credentials`: a page
calls with `credentials: "omit"` (fetch's default for cross-origin is `same-origin`, which
sends no cookies either).
"""

from __future__ import annotations

from flask import Flask, Response, request

MEMBER_PATHS = ("/v1/me",)
LOGIN_PATHS = frozenset({"/v1/login-codes", "/v1/login-codes/verify"})
ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-ID"
EXPOSED_HEADERS = "Idempotent-Replayed, Retry-After, WWW-Authenticate, X-Request-ID"
PREFLIGHT_MAX_AGE = "600"


def is_browser_path(path: str) -> bool:
    """The endpoints a member app's web page may call across origins."""
    member = any(path == base or path.startswith(base + "/") for base in MEMBER_PATHS)
    return member or path in LOGIN_PATHS


def init_cors(app: Flask) -> None:
    """Answer preflights and mark answers, for the configured origins only (the settings'
    `cors_origins`). Registered before the other request hooks: a preflight carries no
    credentials and must not count as a failed login."""

    def permitted_origin() -> str | None:
        origin = request.headers.get("Origin")
        allowed = app.extensions["omniloyal.settings"].cors_origins
        if origin in allowed and is_browser_path(request.path):
            return origin
        return None

    @app.before_request
    def answer_preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        origin = permitted_origin()
        if origin is None:
            return None  # not ours: the request goes on as any OPTIONS (and gets no CORS)
        adapter = app.create_url_adapter(request)
        methods = sorted(set(adapter.allowed_methods(request.path)) - {"OPTIONS", "HEAD"})
        response = Response(status=204)
        response.headers.update(
            {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ", ".join(methods),
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            }
        )
        return response

    @app.after_request
    def mark_response(response: Response) -> Response:
        if is_browser_path(request.path):
            response.vary.add("Origin")  # caches keep one answer per origin
        origin = permitted_origin()
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            if request.method != "OPTIONS":
                response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
