"""Ledger jobs: expire due points, release pending points, expire checkout holds.

Each is a batch job (loyalty/batches.py): chunks of members locked in id order, each
chunk its own transaction, until nothing is due, re-enqueued before the job timeout.
"""

from __future__ import annotations

from functools import partial

from loyalty.batches import BATCH_JOB_TIMEOUT, CHUNK_MEMBERS, BatchCursor, batch_job_run
from loyalty.clock import utcnow
from loyalty.ledger import operations
from loyalty.queue import job
from loyalty.scheduler import Schedule


@job("ledger", timeout=BATCH_JOB_TIMEOUT)
def expire_points(chunk: int = CHUNK_MEMBERS) -> int:
    """Points expired by this run (and its continuations' share is theirs)."""
    step = partial(operations.expire_points, utcnow(), limit_members=chunk)
    return batch_job_run(
        lambda cursor: step(cursor=cursor), what="expire-points", continuation=expire_points
    )


@job("ledger", timeout=BATCH_JOB_TIMEOUT)
def release_pending_points(chunk: int = CHUNK_MEMBERS) -> int:
    step = partial(operations.release_pending_points, utcnow(), limit_members=chunk)
    return batch_job_run(
        lambda cursor: step(cursor=cursor),
        what="release-pending-points",
        continuation=release_pending_points,
    )


@job("ledger", timeout=BATCH_JOB_TIMEOUT)
def expire_holds(chunk: int = CHUNK_MEMBERS) -> int:
    step = partial(operations.expire_holds, utcnow(), limit=chunk)
    return batch_job_run(
        lambda cursor: step(cursor=cursor), what="expire-holds", continuation=expire_holds
    )


@job("ledger", timeout=BATCH_JOB_TIMEOUT)
def announce_expiring_points(chunk: int = 5 * CHUNK_MEMBERS, after_id: int = 0) -> int:
    """Walks members in id order; a continuation starts at `after_id`."""
    step = partial(operations.announce_expiring_points, utcnow(), limit=chunk)
    return batch_job_run(
        lambda cursor: step(cursor=cursor),
        what="announce-expiring-points",
        continuation=announce_expiring_points,
        cursor=BatchCursor(after_id=after_id),
    )


def schedules() -> list[Schedule]:
    return [
        Schedule("announce-expiring-points", 86400, announce_expiring_points),
        Schedule("expire-holds", 30, expire_holds),
        Schedule("release-pending-points", 600, release_pending_points),
        Schedule("expire-points", 3600, expire_points),
    ]
