"""Purge login codes a day after they expired."""

from __future__ import annotations

from loyalty.clock import utcnow
from loyalty.jobs import PURGE_TIME_BUDGET, run_in_chunks
from loyalty.queue import job
from loyalty.scheduler import Schedule
from notifications.login_codes import operations


@job("default")
def purge_login_codes(chunk: int = 5000) -> int:
    now = utcnow()
    return run_in_chunks(
        lambda: operations.purge_expired(now, limit=chunk),
        limit=chunk,
        time_budget=PURGE_TIME_BUDGET,
    )


def schedules() -> list[Schedule]:
    return [Schedule("purge-login-codes", 3600, purge_login_codes)]
