"""Coupon jobs: release checkout holds past their TTL (a batch job, loyalty/batches.py)."""

from __future__ import annotations

from loyalty.batches import BATCH_JOB_TIMEOUT, CHUNK_MEMBERS, BatchCursor, batch_job_run
from loyalty.clock import utcnow
from loyalty.coupons import operations
from loyalty.queue import job
from loyalty.scheduler import Schedule


@job("default", timeout=BATCH_JOB_TIMEOUT)
def expire_coupon_holds(chunk: int = CHUNK_MEMBERS) -> int:
    """Give back the uses of expired coupon holds; returns how many were released."""
    now = utcnow()

    def step(cursor: BatchCursor) -> int:
        return operations.expire_holds(now, limit=chunk, cursor=cursor)

    return batch_job_run(step, what="expire-coupon-holds", continuation=expire_coupon_holds)


def schedules() -> list[Schedule]:
    return [Schedule("expire-coupon-holds", 30, expire_coupon_holds)]
