"""The dashboard's write edge: one change = the operation, its audit entry, one commit.

Like loyalty.http.write_endpoint for the API: the operation runs with explicit arguments
(the user as `actor`), the audit entry is written in the same transaction, a deadlock or
serialization failure runs the whole unit again, and a domain error rolls everything back
and is shown to the user instead of a problem+json.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import flash, g
from flask_login import current_user

from loyalty import transactions
from loyalty.clock import utcnow
from loyalty.dashboard import audit
from loyalty.db import db, prepare_to_write
from loyalty.errors import OmniloyalError

T = TypeVar("T")


class Refused(Exception):
    """The operation refused the change; its message was flashed to the user."""


def change(
    action: str,
    operation: Callable[[], T],
    *,
    target_type: str | None = None,
    target_id: Any = None,
    reason: str | None = None,
    after_target: Callable[[T], Any] | None = None,
    details: Callable[[T], dict[str, Any]] | None = None,
) -> T:
    """Run `operation`, audit it, commit. Raises Refused (after flashing why) on a domain
    error. `after_target(result)` names the target when the operation created it."""
    prepare_to_write()
    actor = current_user.actor

    def unit() -> T:
        try:
            before = audit.snapshot(target_type, None if target_id is None else str(target_id))
            result = operation()
            db.session.flush()
            target = after_target(result) if after_target is not None else target_id
            after = audit.snapshot(target_type, None if target is None else str(target))
            if details is not None:
                after = {**(after or {}), **details(result)}
            audit.record(
                actor=actor,
                action=action,
                now=utcnow(),
                target_type=target_type,
                target_id=target,
                reason=reason,
                before=before,
                after=after,
                request_id=g.get("request_id"),
            )
            db.session.commit()
            return result
        except BaseException:
            db.session.rollback()
            raise

    try:
        return transactions.retrying(unit, what=action)
    except OmniloyalError as error:
        flash(error.detail or error.title, "error")
        raise Refused(error.detail) from error


def record_event(action: str, *, actor: str, target_type: str | None = None, target_id: Any = None,
                 after: Any = None) -> None:  # fmt: skip
    """An audit entry without a data change (a sign-in, a failed sign-in, an export)."""
    prepare_to_write()

    def unit() -> None:
        try:
            audit.record(
                actor=actor,
                action=action,
                now=utcnow(),
                target_type=target_type,
                target_id=target_id,
                after=after,
                request_id=g.get("request_id"),
            )
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise

    transactions.retrying(unit, what=action)
