"""Jobs run through real RQ workers: a real Redis on the PostgreSQL run, fakeredis embedded."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import sqlalchemy as sa

from loyalty import outbox
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.jobs import relay_outbox
from loyalty.ledger import jobs as ledger_jobs
from loyalty.ledger import operations as ledger
from loyalty.outbox import OutboxDelivery, consumer, unregister
from loyalty.queue import AppWorker, get_queue, make_worker, start_embedded_worker
from loyalty.scheduler import run_due_schedules


def test_an_enqueued_job_runs_in_a_worker_and_commits_its_work(app, make):
    member = make.member()
    make.earn(member.id, 100, expires_at=utcnow() - timedelta(seconds=1))
    job = ledger_jobs.expire_points.enqueue()
    assert job.get_status() == "queued"
    make_worker(app, ("ledger",)).work(burst=True)
    assert job.get_status() == "finished"
    assert job.return_value() == 100
    db.session.expire_all()
    assert ledger.member_balance(member.id).balance == 0


def test_a_failing_job_is_recorded_as_failed_not_swallowed(app):
    job = get_queue("default").enqueue("loyalty.ledger.operations.lock_member_accounts", 999)
    make_worker(app, ("default",)).work(burst=True)
    assert job.get_status() == "failed"


def test_each_schedule_slot_is_enqueued_once_even_with_many_workers(app):
    now = time.time()
    first = run_due_schedules(app, now)
    again = run_due_schedules(app, now)
    assert "expire-points" in first
    assert again == []


def test_the_outbox_relay_job_delivers_each_event_once_and_in_order(app, make):
    seen: list[int] = []
    consumer("test.relay", name="test.queue.relay")(lambda event: seen.append(event.id))
    try:
        for n in range(3):
            outbox.emit("test.relay", member_id=None, payload={"n": n}, now=utcnow())
        db.session.commit()
        job = relay_outbox.enqueue()
        make_worker(app, ("default",)).work(burst=True)
        assert job.get_status() == "finished"
        relay_outbox()
        assert len(seen) == 3 and seen == sorted(seen)
        assert (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(OutboxDelivery)
                .where(OutboxDelivery.status != "done")
            )
            == 0
        )
    finally:
        unregister("test.queue.relay")


def test_the_embedded_worker_thread_runs_jobs_in_process(app, make):
    if app.extensions["omniloyal.settings"].redis_url is not None:
        return  # the embedded worker is for the no-Redis default; covered on the SQLite run
    member = make.member()
    make.earn(member.id, 40, expires_at=utcnow() - timedelta(seconds=1))
    job = ledger_jobs.expire_points.enqueue()
    stop = threading.Event()
    thread = start_embedded_worker(app, stop)
    try:
        deadline = time.time() + 10
        while job.get_status(refresh=True) != "finished" and time.time() < deadline:
            time.sleep(0.1)
        assert job.get_status() == "finished"
    finally:
        stop.set()
        thread.join(timeout=10)


@contextmanager
def _signal_handlers_restored() -> Iterator[None]:
    """A worker run in the test process installs its SIGINT/SIGTERM handlers here."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def _stops_at_once(worker: AppWorker) -> bool:
    """Whether `work` returns without waiting for jobs (it would idle for 30 s)."""
    started = time.monotonic()
    worker.work(max_idle_time=30, logging_level="INFO")
    return time.monotonic() - started < 10


class _StopDuringLogging(logging.Handler):
    """A stop signal that lands while a record is being formatted: the handler's
    StopRequested is swallowed, as a log handler swallows any error of its own."""

    def __init__(self, worker: AppWorker) -> None:
        super().__init__(logging.INFO)
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        if "Listening on" not in record.getMessage():
            return
        try:
            self.worker.request_stop(signal.SIGTERM, None)
        except Exception:
            self.handleError(record)


def test_a_stop_signal_that_logging_swallowed_still_stops_the_worker(app):
    worker = make_worker(app, ("default",))
    worker.stop_event = threading.Event()
    swallower = _StopDuringLogging(worker)
    rq_log = logging.getLogger("rq.worker")
    rq_log.addHandler(swallower)
    try:
        with _signal_handlers_restored():
            assert _stops_at_once(worker)
    finally:
        rq_log.removeHandler(swallower)
    assert worker.stop_event.is_set()  # and work_forever starts no new worker


def test_a_worker_started_after_the_stop_signal_does_not_wait_for_jobs(app):
    """work_forever replaces a worker that failed (Redis away); a signal that came before
    the new one installed its handlers went to the old one's, which set the stop event."""
    worker = make_worker(app, ("default",))
    worker.stop_event = threading.Event()
    worker.stop_event.set()
    with _signal_handlers_restored():
        assert _stops_at_once(worker)
