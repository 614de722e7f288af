"""Tier jobs: the daily evaluation, the only place where members move down a tier."""

from __future__ import annotations

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.queue import job
from loyalty.scheduler import Schedule
from loyalty.tiers import operations

BATCH_SIZE = 500


@job("default")
def evaluate_tiers(batch_size: int = BATCH_SIZE) -> int:
    """Re-evaluate every active member in batches; returns how many changed tier.

    Each batch commits on its own (this job is the edge), so a long run holds no
    transaction open across the whole member base and a crash resumes harmlessly: the
    evaluation is idempotent.
    """
    now = utcnow()
    after_id, changed = 0, 0
    while True:
        after_id, batch_changed = operations.evaluate_tier_batch(
            now, after_id=after_id, batch_size=batch_size
        )
        db.session.commit()
        changed += batch_changed
        if after_id == 0:
            return changed


def schedules() -> list[Schedule]:
    return [Schedule("evaluate-tiers", 86400, evaluate_tiers)]
