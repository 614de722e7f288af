"""Coupon jobs: release checkout holds past their TTL (a batch job, loyalty/batches.py), and
generate a code batch asked for from the dashboard or the API (over 200,000 codes), a chunk
per transaction."""

from __future__ import annotations

import logging
from datetime import timedelta

from loyalty.batches import BATCH_JOB_TIMEOUT, CHUNK_MEMBERS, BatchCursor, batch_job_run
from loyalty.clock import utcnow
from loyalty.coupons import offers, operations
from loyalty.db import db
from loyalty.errors import OmniloyalError
from loyalty.queue import job
from loyalty.scheduler import Schedule

log = logging.getLogger(__name__)
STALLED_AFTER = timedelta(minutes=10)  # a chunk takes about a second: its job was lost


@job("default", timeout=BATCH_JOB_TIMEOUT)
def expire_coupon_holds(chunk: int = CHUNK_MEMBERS) -> int:
    """Give back the uses of expired coupon holds; returns how many were released."""
    now = utcnow()

    def step(cursor: BatchCursor) -> int:
        return operations.expire_holds(now, limit=chunk, cursor=cursor)

    return batch_job_run(step, what="expire-coupon-holds", continuation=expire_coupon_holds)


@job("default", timeout=BATCH_JOB_TIMEOUT)
def generate_code_batch(batch_id: int, after_id: int = 0) -> int:
    """Generate a running batch's codes, offers.BACKGROUND_CHUNK per committed transaction,
    until it holds what was asked for (the page shows the progress). A refusal (the offer
    ended meanwhile) or an error marks the batch failed with why; the codes made stay."""
    del after_id  # batch_job_run's continuation argument; the batch row is the cursor

    def step(cursor: BatchCursor) -> int:
        added = offers.generate_codes_chunk(batch_id, now=utcnow())
        cursor.handled += added
        return added

    try:
        return batch_job_run(
            step,
            what=f"coupon-batch-{batch_id}",
            continuation=generate_code_batch,
            continuation_args=(batch_id,),
        )
    except OmniloyalError as error:  # a refusal: recorded on the batch, not a job failure
        db.session.rollback()
        offers.fail_code_batch(batch_id, error.detail or error.title, now=utcnow())
        db.session.commit()
        return 0
    except Exception as error:
        db.session.rollback()
        offers.fail_code_batch(batch_id, type(error).__name__, now=utcnow())
        db.session.commit()
        raise  # and RQ keeps the failed job (Operations: retry)


@job("default")
def resume_code_batches() -> int:
    """Enqueue again the running batches whose job was lost (a worker killed, or the queue
    unreachable right after the batch was committed)."""
    before, after_id, resumed = utcnow() - STALLED_AFTER, 0, 0
    while stalled := offers.stalled_batches(before, after_id=after_id):
        for batch_id in stalled:
            log.warning("code batch %s stalled; enqueuing its job again", batch_id)
            generate_code_batch.enqueue(batch_id)
        after_id, resumed = stalled[-1], resumed + len(stalled)
    return resumed


def schedules() -> list[Schedule]:
    return [
        Schedule("expire-coupon-holds", 30, expire_coupon_holds),
        Schedule("resume-code-batches", 300, resume_code_batches),
    ]
