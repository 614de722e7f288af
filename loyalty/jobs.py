"""Core jobs and the list of every periodic job the workers schedule."""

from __future__ import annotations

from flask import current_app

from loyalty import idempotency, outbox
from loyalty.clock import utcnow
from loyalty.queue import job
from loyalty.scheduler import Schedule


@job("default")
def relay_outbox() -> int:
    return outbox.relay_batch(utcnow())


@job("default")
def purge_idempotency_keys() -> int:
    ttl = current_app.extensions["omniloyal.settings"].idempotency_ttl_hours
    return idempotency.purge_expired(utcnow(), ttl)


def periodic_jobs() -> list[Schedule]:
    from loyalty.auth import jobs as auth_jobs
    from loyalty.coupons import jobs as coupon_jobs
    from loyalty.ledger import jobs as ledger_jobs
    from loyalty.tiers import jobs as tier_jobs

    return [
        Schedule("relay-outbox", 5, relay_outbox),
        Schedule("purge-idempotency-keys", 3600, purge_idempotency_keys),
        *ledger_jobs.schedules(),
        *tier_jobs.schedules(),
        *coupon_jobs.schedules(),
        *auth_jobs.schedules(),
    ]
