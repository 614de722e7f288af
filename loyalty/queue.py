"""Background jobs on RQ: one `job` decorator, one enqueue path, real or embedded Redis.

With REDIS_URL set, jobs go to Redis and `omniloyal worker` processes run them. Without it
(the embedded default), the queue lives in an in-process fakeredis and a worker thread runs
the very same job functions through RQ's own SimpleWorker.

Jobs receive ids, never ORM objects; each job is an edge: it commits once at the end or
rolls back, like a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import redis
from flask import Flask, current_app
from rq import Queue, Retry, SimpleWorker
from rq.timeouts import TimerDeathPenalty

from loyalty.db import db
from loyalty.transactions import commit_retrying

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)

QUEUES = ("default", "ledger", "notifications", "campaigns")


def connect_redis(url: str | None) -> redis.Redis:
    if url is None:
        import fakeredis

        # One shared in-memory server per process: the web threads and the worker thread
        # see the same queues.
        return fakeredis.FakeRedis(server=_embedded_server())
    return redis.Redis.from_url(url)


_fake_server = None


def _embedded_server():  # type: ignore[no-untyped-def]
    global _fake_server
    if _fake_server is None:
        import fakeredis

        _fake_server = fakeredis.FakeServer()
    return _fake_server


def get_redis() -> redis.Redis:
    return current_app.extensions["omniloyal.redis"]


def get_queue(name: str = "default") -> Queue:
    return Queue(name, connection=get_redis())


DEFAULT_JOB_TIMEOUT = 180  # seconds; RQ's own default, written down


def job(
    queue: str = "default", *, retry: Retry | None = None, timeout: int = DEFAULT_JOB_TIMEOUT
) -> Callable[[F], F]:
    """Declare a background job. Call it directly (tests, CLI) or `.enqueue(...)` it.

    The job is the edge: it commits once, and a deadlock or serialization failure runs the
    whole job again (loyalty/transactions.py). `timeout`: RQ stops the job after that many
    seconds (batch jobs stop starting chunks well before, see loyalty/batches.py).
    """

    def decorate(func: F) -> F:
        @wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return commit_retrying(lambda: func(*args, **kwargs), what=f"job {func.__name__}")
            finally:
                db.session.remove()

        def enqueue(*args: Any, job_id: str | None = None, **kwargs: Any) -> Any:
            return get_queue(queue).enqueue_call(
                run,
                args=args,
                kwargs=kwargs,
                job_id=job_id,
                retry=retry,
                timeout=timeout,
                failure_ttl=7 * 86400,
            )

        run.enqueue = enqueue  # type: ignore[attr-defined]
        run.queue_name = queue  # type: ignore[attr-defined]
        run.timeout = timeout  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    return decorate


class AppWorker(SimpleWorker):
    """Runs jobs in this process, inside the Flask app context, without signals.

    Used by the embedded worker thread (signals and SIGALRM only work in the main thread)
    and by `omniloyal worker`, so both run jobs the same way.
    """

    death_penalty_class = TimerDeathPenalty
    flask_app: Flask | None = None
    stop_event: threading.Event | None = None  # set on SIGTERM/SIGINT (see work_forever)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            super()._install_signal_handlers()
        if self.stop_event is not None and self.stop_event.is_set():
            # A signal before these handlers went to the previous worker's (work_forever
            # replaces a failed worker): this one must not start waiting for jobs.
            self._stop_requested = True

    def request_stop(self, signum: Any, frame: Any) -> None:
        if self.stop_event is not None:
            self.stop_event.set()
        # An idle worker stops by the StopRequested this handler raises, but code that
        # catches every exception swallows it: logging does when the signal lands while a
        # record is formatted, and the worker then waited for jobs again (until the next
        # signal). The work loop also checks this flag before it waits.
        self._stop_requested = True
        super().request_stop(signum, frame)

    def execute_job(self, job: Any, queue: Any) -> Any:
        assert self.flask_app is not None
        with self.flask_app.app_context():
            return super().execute_job(job, queue)


def make_worker(app: Flask, queues: tuple[str, ...] = QUEUES) -> AppWorker:
    connection = app.extensions["omniloyal.redis"]
    worker = AppWorker(
        [Queue(name, connection=connection) for name in queues], connection=connection
    )
    worker.flask_app = app
    return worker


MAX_RECONNECT_SECONDS = 30.0
STEADY_SECONDS = 60.0  # a worker that ran this long resets the reconnect backoff


def work_forever(app: Flask, queues: tuple[str, ...], stop: threading.Event) -> None:
    """Run RQ workers until `stop` is set (SIGTERM/SIGINT set it too).

    RQ's work loop quits on an error it doesn't expect ("found an unhandled exception,
    quitting"), e.g. when Redis restarts while a job finishes; a Redis that is down at
    start raises. Either way a new worker starts after a doubling pause (up to 30 s), so
    the process never looks healthy while doing nothing.
    """
    from rq.exceptions import StopRequested
    from rq.worker import DequeueStrategy

    pause = 1.0
    while not stop.is_set():
        started = time.monotonic()
        try:
            # Inside the try: building a worker talks to Redis too, and Redis may be away.
            worker = make_worker(app, queues)
            worker.stop_event = stop
            # Round robin over the queues: a long relay run keeps `default` busy, and
            # strict queue order would starve the notification sends behind its slots.
            worker.work(logging_level="INFO", dequeue_strategy=DequeueStrategy.ROUND_ROBIN)
        except StopRequested:
            return
        except Exception:
            log.warning("RQ worker failed", exc_info=True)
        if stop.is_set():
            return
        if time.monotonic() - started > STEADY_SECONDS:
            pause = 1.0
        log.warning("RQ worker stopped on an error (Redis away?); restarting in %.0f s", pause)
        try:
            stop.wait(pause)
        except StopRequested:  # a signal during the pause, through the last worker's handler
            return
        pause = min(pause * 2, MAX_RECONNECT_SECONDS)


def start_embedded_worker(app: Flask, stop: threading.Event | None = None) -> threading.Thread:
    """The in-process worker for the embedded default: a daemon thread polling fakeredis.

    It runs until the process ends, or until `stop` is set.
    """
    stop = stop or threading.Event()

    def loop() -> None:
        from loyalty.scheduler import run_due_schedules

        worker = make_worker(app)
        while not stop.is_set():
            try:
                with app.app_context():
                    run_due_schedules(app)
                worker.work(burst=True, logging_level="WARNING")
            except Exception:
                log.exception("embedded worker loop failed; continuing")
            stop.wait(0.5)

    thread = threading.Thread(target=loop, name="omniloyal-embedded-worker", daemon=True)
    thread.start()
    return thread
