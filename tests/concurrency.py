"""Running the same work in many threads at once, each with its own app context and session."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask

from loyalty.db import db

T = TypeVar("T")


def in_threads(app: Flask, count: int, work: Callable[[int], T]) -> list[T]:
    """Run work(0..count-1) in `count` threads released together by a barrier.

    Pass ids into `work`, never ORM objects: each thread has its own session.
    """
    barrier = threading.Barrier(count)

    def run(i: int) -> T:
        with app.app_context():
            barrier.wait()
            try:
                return work(i)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def start_in_thread(app: Flask, work: Callable[[], T]) -> Future[T]:
    """Run `work()` in a new thread with its own app context and session; returns its future.

    For tests that order concurrent requests step by step (see `wait_for_lock_waiters`).
    """

    def run() -> T:
        with app.app_context():
            try:
                return work()
            finally:
                db.session.remove()

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


def wait_for_lock_waiters(count: int, *, timeout: float = 15.0) -> None:
    """Wait until `count` sessions of this PostgreSQL database wait on a lock.

    Lets a test put one transaction behind a lock before starting the next, so a lock-order
    race happens the same way on every run instead of by chance.
    """
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + timeout
    with db.engine.connect() as connection:
        while True:
            waiting = connection.execute(query).scalar_one()
            if waiting >= count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{waiting} lock waiters after {timeout}s, wanted {count}")
            connection.rollback()  # a fresh snapshot of pg_stat_activity
            time.sleep(0.02)


@contextmanager
def rows_locked(statement: str, **params: Any) -> Iterator[None]:
    """Hold row locks (`SELECT ... FOR UPDATE`) on another connection until the block ends."""
    with db.engine.connect() as connection:
        connection.execute(sa.text(statement), params).all()
        try:
            yield
        finally:
            connection.rollback()
