"""One transaction, retried when PostgreSQL aborts it for a deadlock or a serialization failure.

The lock order (docs/architecture.md) makes deadlocks between our own paths impossible;
this is the safety net for what remains (a path not yet in order, a merge landing between
a read and a lock, a future isolation level). PostgreSQL rolls the whole transaction
back, so the whole unit is run again: the request at the request edge (including its
Idempotency-Key claim), a chunk at the job edge. Nothing outside the database may happen
inside a retried unit except what is safe to repeat.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

from loyalty.db import db

T = TypeVar("T")
log = logging.getLogger(__name__)

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
ATTEMPTS = 4  # the first run and three retries
BASE_DELAY_SECONDS = 0.02


def is_retryable(error: BaseException) -> bool:
    """A database error that says "run the same transaction again"."""
    if not isinstance(error, sa.exc.DBAPIError):
        return False
    return getattr(error.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


def retrying(unit: Callable[[], T], *, what: str, attempts: int = ATTEMPTS) -> T:
    """Run `unit` (which commits or rolls back itself) and run it again, after a short
    jittered backoff, when the database aborted it as retryable; at most `attempts` runs.

    The last retryable error propagates: the caller decides what that means (a 503 problem
    at the request edge, a failed job at the job edge).
    """
    for attempt in range(1, attempts + 1):
        try:
            return unit()
        except sa.exc.DBAPIError as error:
            db.session.rollback()
            if not is_retryable(error) or attempt == attempts:
                raise
            sqlstate = getattr(error.orig, "sqlstate", None)
            log.warning(
                "retrying %s after %s (attempt %d of %d)", what, sqlstate, attempt + 1, attempts
            )
            time.sleep(random.uniform(0, BASE_DELAY_SECONDS * 2**attempt))
    raise AssertionError("unreachable")  # the loop returns or raises


def commit_retrying(unit: Callable[[], T], *, what: str, attempts: int = ATTEMPTS) -> T:
    """Run `unit` and commit, as one transaction retried like `retrying`; roll back on
    any failure."""

    def run() -> T:
        try:
            result = unit()
            db.session.commit()
            return result
        except BaseException:
            db.session.rollback()
            raise

    return retrying(run, what=what, attempts=attempts)
