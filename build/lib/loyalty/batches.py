"""The batch job pattern: small chunks, each its own transaction, until the due work is done.

A batch operation handles one chunk (e.g. at most 500 members, locked in id order) and
reports progress on a `BatchCursor`; `run_chunks` commits each chunk (retried on a
deadlock, see loyalty/transactions.py) and runs the next one until a chunk finds nothing
due. Inside an RQ job it stops before the job's timeout and re-enqueues the job as a
continuation, so a scheduled run always ends with all due work done, however large the
member base, without one long transaction or a job killed half way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

CHUNK_MEMBERS = 500  # members (or rows) per chunk: one short transaction
BATCH_JOB_TIMEOUT = 1800  # seconds; RQ kills a job past its timeout
TIME_BUDGET_SHARE = 0.8  # a job stops starting chunks after this share of its timeout


@dataclass
class BatchCursor:
    """Progress of one batch run across its chunks (kept in memory by the job)."""

    handled: int = 0  # rows or members a chunk found due (0 new ones: done)
    after_id: int = 0  # for operations that walk members in id order
    skip: set[int] = field(default_factory=set)  # still due, but nothing this run can do


@dataclass(frozen=True)
class BatchResult:
    total: int  # what the chunks returned, summed (points expired, holds closed...)
    chunks: int
    finished: bool  # False: stopped at the time budget, a continuation carries on


def run_chunks(
    step: Callable[[BatchCursor], int],
    *,
    what: str,
    budget_seconds: float | None = None,
    cursor: BatchCursor | None = None,
) -> BatchResult:
    """Run `step(cursor)` chunk by chunk, committing each, until a chunk handles nothing.

    `budget_seconds`: start no new chunk after that long (None: run to the end).
    """
    from loyalty.transactions import commit_retrying

    cursor = cursor if cursor is not None else BatchCursor()
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    total = chunks = 0
    while True:
        before = cursor.handled
        total += commit_retrying(lambda: step(cursor), what=f"{what} chunk")
        chunks += 1
        if cursor.handled == before:
            return BatchResult(total, chunks, True)
        if deadline is not None and time.monotonic() >= deadline:
            log.info("%s: time budget spent after %d chunks; continuing in a new job", what, chunks)
            return BatchResult(total, chunks, False)


def batch_job_run(
    step: Callable[[BatchCursor], int],
    *,
    what: str,
    continuation: Any,
    cursor: BatchCursor | None = None,
    budget_seconds: float | None = None,
) -> int:
    """The body of a batch job: run the chunks; inside an RQ job, within the job's time
    budget, re-enqueueing `continuation` (the job itself) when the budget runs out, with
    `after_id` when the cursor walks members in id order.
    Called directly (CLI, tests) it runs to the end, unless given `budget_seconds`.
    Returns the chunks' total."""
    from rq import get_current_job

    budget = budget_seconds
    current = get_current_job()
    if budget is None and current is not None and current.timeout and current.timeout > 0:
        budget = current.timeout * TIME_BUDGET_SHARE
    cursor = cursor if cursor is not None else BatchCursor()
    result = run_chunks(step, what=what, budget_seconds=budget, cursor=cursor)
    if not result.finished:
        if cursor.after_id:
            continuation.enqueue(after_id=cursor.after_id)
        else:
            continuation.enqueue()
    return result.total
