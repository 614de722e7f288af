"""Tier jobs: the daily evaluation, the only place where members move down a tier."""

from __future__ import annotations

from loyalty.batches import BATCH_JOB_TIMEOUT, BatchCursor, batch_job_run
from loyalty.clock import utcnow
from loyalty.queue import job
from loyalty.scheduler import Schedule
from loyalty.tiers import operations

BATCH_SIZE = 500


@job("default", timeout=BATCH_JOB_TIMEOUT)
def evaluate_tiers(batch_size: int = BATCH_SIZE, after_id: int = 0) -> int:
    """Re-evaluate every active member in batches; returns how many changed tier.

    A batch job (loyalty/batches.py): members in id order, each batch commits on its own,
    so a long run holds no transaction open across the whole member base; past its time
    budget it re-enqueues itself from the next member (`after_id`). The evaluation is
    idempotent, so a run that starts again after a crash does no harm.
    """
    now = utcnow()

    def step(cursor: BatchCursor) -> int:
        last_id, changed = operations.evaluate_tier_batch(
            now, after_id=cursor.after_id, batch_size=batch_size
        )
        if last_id:
            cursor.handled += 1
            cursor.after_id = last_id
        return changed

    return batch_job_run(
        step,
        what="evaluate-tiers",
        continuation=evaluate_tiers,
        cursor=BatchCursor(after_id=after_id),
    )


def schedules() -> list[Schedule]:
    return [Schedule("evaluate-tiers", 86400, evaluate_tiers)]
