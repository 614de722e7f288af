"""The typed exceptions operations raise, mapped once to RFC 9457 problem+json at the edge.

Operations raise these; HTTP handlers never build error responses themselves. Each class
names its HTTP status and a stable problem type slug clients can switch on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

# A problem's `type` is a URI reference relative to the service itself: `/problems/<slug>`
# resolves, on whatever host answered, to the HTML page explaining it (loyalty/problems.py),
# and the string is the same on every deployment, so clients can switch on it.
PROBLEM_BASE = "/problems/"


@dataclass(frozen=True)
class ProblemType:
    """One entry of the list of problem types (served at /problems)."""

    slug: str
    status: int
    title: str
    description: str


# slug -> its one status, title and explanation. Every OmniloyalError subclass registers
# itself; the HTTP-level types (bad-request, method-not-allowed...) register in loyalty.api.
PROBLEM_TYPES: dict[str, ProblemType] = {}


def register_problem_type(slug: str, status: int, title: str, description: str) -> None:
    """Record a problem type; one slug has one title and status wherever it is raised."""
    entry = ProblemType(slug, status, title, " ".join(description.split()))
    known = PROBLEM_TYPES.get(slug)
    if known is not None and (known.status, known.title) != (status, title):
        raise RuntimeError(f"problem type {slug!r} registered twice with different titles")
    if known is None or not known.description:
        PROBLEM_TYPES[slug] = entry


def field_error(field: str, message: str) -> dict[str, str]:
    """One entry of a problem's `errors`: the field's path in the request, and why.

    The path names body fields by their JSON names, list items by index, joined by dots
    (`lines.0.unit_price_minor`); query parameters and headers by their names. An error on
    the body as a whole has the path "" (empty)."""
    return {"field": field, "message": message}


class OmniloyalError(Exception):
    """Base of every expected failure; never a 5xx (except ServiceUnavailable: a refusal
    on purpose while a dependency is down)."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_problem_type(cls.slug, cls.status, cls.title, cls.__doc__ or "")

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


register_problem_type(
    OmniloyalError.slug,
    OmniloyalError.status,
    OmniloyalError.title,
    "The request can't be processed as sent (e.g. a JSON body that doesn't parse).",
)


class InvalidInput(OmniloyalError):
    """The request's input is not valid: a field has the wrong type or format, is missing,
    out of range or unknown (the schema), or breaks a rule that needs the database to check
    (an unknown store, a basket line the order refuses). `errors` lists each field at fault
    with its path and a message, the same way for both kinds."""

    status, slug, title = 422, "validation-failed", "Validation failed"

    def __init__(self, detail: str | None = None, *, field: str | None = None, **extra: Any):
        # A domain check on one field answers exactly like a schema error on it.
        if "errors" not in extra:
            extra["errors"] = [field_error(field, detail or self.title)] if field else []
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
