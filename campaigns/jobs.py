"""Profile jobs (the hourly rolling-window refresh, the nightly RFM scoring) and the
campaign fan-out (`deliver-campaigns`, RQ queue `campaigns`, every 2 s)."""

from __future__ import annotations

from campaigns import profiles
from loyalty.batches import BATCH_JOB_TIMEOUT, batch_job_run
from loyalty.clock import utcnow
from loyalty.queue import job
from loyalty.scheduler import Schedule


@job("default", timeout=BATCH_JOB_TIMEOUT)
def refresh_profile_windows() -> int:
    """Refresh the people whose 30/90/365-day windows lost an order since their row was
    computed (chunks; each refreshed row leaves the stale ranges)."""
    now = utcnow()
    return batch_job_run(
        lambda cursor: profiles.stale_windows_chunk(cursor, now),
        what="refresh-profile-windows",
        continuation=refresh_profile_windows,
    )


@job("default", timeout=BATCH_JOB_TIMEOUT)
def score_rfm() -> int:
    """Recompute the RFM quintiles (one set-based UPDATE)."""
    from loyalty.db import db

    scored = profiles.score_rfm(utcnow())
    db.session.commit()
    return scored


DELIVER_EVERY_SECONDS = 2
# A run stops starting chunks after this long and the next slot's job carries on, so a
# worker turns to the notifications queue (listened to first) in between: a big fan-out
# never starves the sends of the messages it queues.
DELIVER_TIME_BUDGET = 30.0


@job("campaigns", timeout=BATCH_JOB_TIMEOUT)
def deliver_campaigns() -> int:
    """Start due campaign runs, then fan out pending recipients chunk by chunk until none
    is left (or the time budget is spent: a continuation carries on). While a big run goes
    out, the next slots' jobs start on other workers and share it (SKIP LOCKED)."""
    from campaigns import delivery
    from loyalty.transactions import commit_retrying

    commit_retrying(lambda: delivery.start_due_runs(utcnow()), what="start campaign runs")
    return batch_job_run(
        lambda cursor: delivery.deliver_chunk(cursor, utcnow()),
        what="deliver-campaigns",
        continuation=deliver_campaigns,
        budget_seconds=DELIVER_TIME_BUDGET,
    )


def schedules() -> list[Schedule]:
    return [
        Schedule("refresh-profile-windows", 3600, refresh_profile_windows),
        Schedule("score-rfm", 86400, score_rfm),
        Schedule("deliver-campaigns", DELIVER_EVERY_SECONDS, deliver_campaigns),
    ]
