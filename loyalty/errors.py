"""The typed exceptions operations raise, mapped once to RFC 9457 problem+json at the edge.

Operations raise these; HTTP handlers never build error responses themselves. Each class
names its HTTP status and a stable problem type slug clients can switch on.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://omniloyal.org/problems/"


class OmniloyalError(Exception):
    """Base of every expected failure; never a 5xx (except ServiceUnavailable: a refusal
    on purpose while a dependency is down)."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra

    def to_problem(self) -> dict[str, Any]:
        return {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }


class InvalidInput(OmniloyalError):
    """Input that passed the schema but breaks a domain rule (e.g. unknown store)."""

    status, slug, title = 422, "invalid-input", "Invalid input"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        # A domain check on one field answers like a schema error: per-field `errors`.
        if "field" in extra and "errors" not in extra:
            extra["errors"] = {extra["field"]: [detail or self.title]}
        super().__init__(detail, **extra)


class NotAuthenticated(OmniloyalError):
    """No credentials, or credentials that are malformed, unknown, revoked or expired."""

    status, slug, title = 401, "not-authenticated", "Authentication required"


class Forbidden(OmniloyalError):
    """Valid credentials that may not do this (wrong scope, store or member)."""

    status, slug, title = 403, "forbidden", "Not allowed"


class NotFound(OmniloyalError):
    """Nothing the caller may see exists under that id (also used for other owners' data)."""

    status, slug, title = 404, "not-found", "Not found"


class Conflict(OmniloyalError):
    """The request is valid but clashes with the current state."""

    status, slug, title = 409, "conflict", "Conflict"


class InsufficientPoints(Conflict):
    """The member's available points (balance minus holds) don't cover the amount."""

    slug, title = "insufficient-points", "Not enough points"


class MemberNotActive(Conflict):
    """The member is blocked, erased or merged into another member."""

    slug, title = "member-not-active", "Member is not active"


class IdempotencyKeyReused(OmniloyalError):
    """The Idempotency-Key was already used for a request with a different body."""

    status, slug, title = 422, "idempotency-key-reused", "Idempotency key reused"


class IdempotencyKeyMissing(OmniloyalError):
    """This write requires an Idempotency-Key header so a retry can't apply it twice."""

    status, slug, title = 428, "idempotency-key-required", "Idempotency-Key header required"


class ResponseErased(OmniloyalError):
    """The Idempotency-Key's request succeeded earlier, but its stored response concerned a
    member who has since been erased: the write is not run again and the body is gone."""

    status, slug, title = 410, "response-erased", "Response erased"


class RateLimited(OmniloyalError):
    """Too many (failed) attempts; retry after the given number of seconds."""

    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(OmniloyalError):
    """A dependency the request needs (e.g. Redis for the coupon guess lockout) is down.

    The one deliberate 5xx: the request was refused on purpose (fail closed), not broken;
    retry after the given number of seconds."""

    status, slug, title = 503, "service-unavailable", "Service temporarily unavailable"


class DatabaseBusy(OmniloyalError):
    """The database aborted the request for a deadlock or serialization failure more times
    than the edge retries it (loyalty/transactions.py); retry after the given seconds."""

    status, slug, title = 503, "database-busy", "Try again"
