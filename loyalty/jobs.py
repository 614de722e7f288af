"""Core jobs and the list of every periodic job the workers schedule."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import current_app

from loyalty import idempotency
from loyalty.clock import utcnow
from loyalty.config import Settings
from loyalty.db import db
from loyalty.outbox import admin as outbox_admin
from loyalty.outbox import relay
from loyalty.queue import job
from loyalty.scheduler import Schedule

PURGE_TIME_BUDGET = 300.0  # seconds per purge run; the next hourly run continues


def _settings() -> Settings:
    return current_app.extensions["omniloyal.settings"]


def run_in_chunks(step: Callable[[], int], *, limit: int, time_budget: float) -> int:
    """Run `step` (which handles at most `limit` rows) and commit, chunk after chunk, until a
    chunk comes back short or the time budget is spent. Returns the rows handled.

    Each chunk is its own short transaction: a purge of millions of rows never holds their
    locks together, and an interrupted run keeps what it committed.
    """
    deadline = time.monotonic() + time_budget
    total = 0
    while True:
        done = step()
        db.session.commit()
        total += done
        if done < limit or time.monotonic() > deadline:
            return total


@job("default")
def relay_outbox() -> dict[str, Any]:
    result = relay.relay_batch(utcnow(), max_attempts=_settings().outbox_max_attempts)
    return {
        "dispatched": result.dispatched,
        "delivered": result.delivered,
        "failed": result.failed,
        "dead": result.dead,
    }


@job("default")
def purge_idempotency_keys(chunk: int = 5000) -> int:
    now, ttl = utcnow(), _settings().idempotency_ttl_hours
    return run_in_chunks(
        lambda: idempotency.purge_expired_chunk(now, ttl, limit=chunk),
        limit=chunk,
        time_budget=PURGE_TIME_BUDGET,
    )


@job("default")
def purge_outbox(chunk: int = 1000) -> int:
    now, retention = utcnow(), timedelta(days=_settings().outbox_retention_days)
    return run_in_chunks(
        lambda: outbox_admin.purge_published_chunk(now, retention=retention, limit=chunk),
        limit=chunk,
        time_budget=PURGE_TIME_BUDGET,
    )


def periodic_jobs() -> list[Schedule]:
    from campaigns import jobs as campaign_jobs
    from campaigns import journey_jobs
    from loyalty.auth import jobs as auth_jobs
    from loyalty.coupons import jobs as coupon_jobs
    from loyalty.dashboard import stats as dashboard_stats
    from loyalty.ledger import jobs as ledger_jobs
    from loyalty.tiers import jobs as tier_jobs
    from notifications import jobs as notify_jobs
    from notifications.login_codes import jobs as login_code_jobs
    from notifications.webhooks import jobs as webhook_jobs

    return [
        Schedule("relay-outbox", 5, relay_outbox),
        Schedule("purge-idempotency-keys", 3600, purge_idempotency_keys),
        Schedule("purge-outbox", 3600, purge_outbox),
        *ledger_jobs.schedules(),
        *tier_jobs.schedules(),
        *coupon_jobs.schedules(),
        *auth_jobs.schedules(),
        *campaign_jobs.schedules(),
        *journey_jobs.schedules(),
        *notify_jobs.schedules(),
        *webhook_jobs.schedules(),
        *login_code_jobs.schedules(),
        *dashboard_stats.schedules(),
    ]
