"""Journey jobs: advance due members (every minute), birthday and lapsed-customer scans
(hourly), and entering a segment's audience when a journey is activated."""

from __future__ import annotations

from campaigns import journeys, triggers
from loyalty.batches import BATCH_JOB_TIMEOUT, BatchCursor, batch_job_run
from loyalty.clock import utcnow
from loyalty.queue import job
from loyalty.scheduler import Schedule


@job("default", timeout=BATCH_JOB_TIMEOUT)
def advance_journeys() -> int:
    """Run every due journey step, chunk after chunk, until nothing is due."""
    now = utcnow()
    return batch_job_run(
        lambda cursor: journeys.advance_due_chunk(cursor, now),
        what="advance-journeys",
        continuation=advance_journeys,
    )


@job("default", timeout=BATCH_JOB_TIMEOUT)
def scan_birthdays(after_id: int = 0) -> int:
    now = utcnow()
    return batch_job_run(
        lambda cursor: triggers.birthdays_chunk(cursor, now),
        what="journey-birthdays",
        continuation=scan_birthdays,
        cursor=BatchCursor(after_id=after_id),
    )


@job("default", timeout=BATCH_JOB_TIMEOUT)
def scan_lapsed(after_id: int = 0) -> int:
    now = utcnow()
    return batch_job_run(
        lambda cursor: triggers.lapsed_chunk(cursor, now),
        what="journey-lapsed",
        continuation=scan_lapsed,
        cursor=BatchCursor(after_id=after_id),
    )


@job("default", timeout=BATCH_JOB_TIMEOUT)
def enter_segment_audience(journey_id: int, after_id: int = 0) -> int:
    now = utcnow()
    return batch_job_run(
        lambda cursor: triggers.segment_audience_chunk(journey_id, cursor, now),
        what=f"journey-{journey_id}-audience",
        continuation=enter_segment_audience,
        continuation_args=(journey_id,),
        cursor=BatchCursor(after_id=after_id),
    )


def schedules() -> list[Schedule]:
    return [
        Schedule("advance-journeys", 60, advance_journeys),
        Schedule("journey-birthdays", 3600, scan_birthdays),
        Schedule("journey-lapsed", 3600, scan_lapsed),
    ]
