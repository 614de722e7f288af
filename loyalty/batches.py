"""The batch job pattern: small chunks, each its own transaction, until the due work is done.

A batch operation handles one chunk (e.g. at most 500 members, locked in id order) and
reports progress on a `BatchCursor`; `run_chunks` commits each chunk (retried on a
deadlock, see loyalty/transactions.py) and runs the next one until a chunk finds nothing
due. Inside an RQ job it stops before the job's timeout and re-enqueues the job as a
continuation, so a scheduled run always ends with all due work done, however large the
member base, without one long transaction or a job killed half way.

`run_claimed` is the other shape of background work: claim a leased chunk of rows, act on
it outside the claim's transaction, record the outcome under the claim.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger(__name__)

C = TypeVar("C")  # a claim
R = TypeVar("R")  # what acting on a slice of claims gave

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
    continuation_args: tuple[Any, ...] = (),
    cursor: BatchCursor | None = None,
    budget_seconds: float | None = None,
) -> int:
    """The body of a batch job: run the chunks; inside an RQ job, within the job's time
    budget, re-enqueueing `continuation` (the job itself, with `continuation_args`) when
    the budget runs out, with `after_id` when the cursor walks members in id order.
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
            continuation.enqueue(*continuation_args, after_id=cursor.after_id)
        else:
            continuation.enqueue(*continuation_args)
    return result.total


# --- claim -> act -> record ---------------------------------------------------------------


@dataclass
class ClaimedRun:
    """What one `run_claimed` loop did."""

    claimed: int = 0  # claims taken
    acted: int = 0  # claims acted on and recorded
    released: int = 0  # claims given back unacted (the time budget was spent)
    rounds: int = 0
    finished: bool = False  # True: a claim found nothing more to do


def run_claimed(
    claim: Callable[[], Sequence[C] | None],
    act: Callable[[Sequence[C]], R],
    record: Callable[[Sequence[C], R], None],
    *,
    release: Callable[[Sequence[C]], None],
    deadline: float | None = None,
    slice_size: int | None = None,
    max_rounds: int | None = None,
) -> ClaimedRun:
    """The loop shared by every worker that claims rows, acts outside the claim's
    transaction and records the outcome under the claim (the outbox relay, the
    notification send job, the webhook deliveries):

        claim()                 -> claims (commit): a leased chunk, SKIP LOCKED; [] when
                                   this round found only work it settled itself, None
                                   when nothing is due (the loop ends)
        act(slice)              -> outcome; no transaction of the claim is open (a provider
                                   call, an HTTP POST, an outbox consumer in its savepoints)
        record(slice, outcome)  (commit) only where the rows are still this claim's
        release(rest)           (commit) claims not acted on once `deadline`
                                   (time.monotonic()) has passed: given back at once

    `slice_size`: act and record that many claims at a time (webhooks: one POST each, so
    a slow receiver can't hold a chunk of claims past the deadline); default the whole
    chunk. `max_rounds`: stop after that many claims (the relay runs one per consumer and
    round). Exceptions from act or record propagate (the job edge rolls back; the leases
    bring the claims back).
    """
    from loyalty.db import db

    run = ClaimedRun()
    while max_rounds is None or run.rounds < max_rounds:
        if deadline is not None and time.monotonic() >= deadline:
            return run
        claims = claim()
        db.session.commit()
        run.rounds += 1
        if claims is None:
            run.finished = True
            return run
        run.claimed += len(claims)
        step = slice_size or max(len(claims), 1)
        for start in range(0, len(claims), step):
            if deadline is not None and time.monotonic() >= deadline:
                # Never act on a claim near the end of its lease: give the rest back.
                release(claims[start:])
                db.session.commit()
                run.released += len(claims) - start
                return run
            part = claims[start : start + step]
            outcome = act(part)
            record(part, outcome)
            db.session.commit()
            run.acted += len(part)
    return run
