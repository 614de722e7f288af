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


def wait_for_a_lock_wait(timeout: float = 10) -> None:
    """Until another session of this database waits on a lock (PostgreSQL): lets a test
    order two transactions exactly, e.g. commit a merge only once a write waits behind it."""
    import time

    import sqlalchemy as sa

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = db.session.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            )
        )
        db.session.rollback()
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("no session ever waited for a lock")


def run_between(app: Flask, holder: Callable[[], None], waiter: Callable[[], None]) -> list:
    """Run `holder` in a thread up to (not including) its commit, then `waiter` in another
    thread until it waits on a lock, then commit `holder` and let `waiter` finish.

    Each runs in its own app context and session; returns the exceptions they raised.
    """
    holding, may_commit = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        with app.app_context():
            try:
                holder()
                holding.set()
                may_commit.wait(10)
                db.session.commit()
            except BaseException as error:  # handed back to the test
                errors.append(error)
                holding.set()
            finally:
                db.session.remove()

    def wait() -> None:
        with app.app_context():
            try:
                waiter()
                db.session.commit()
            except BaseException as error:
                errors.append(error)
            finally:
                db.session.remove()

    first = threading.Thread(target=hold)
    first.start()
    assert holding.wait(10)
    second = threading.Thread(target=wait)
    second.start()
    if not errors:
        wait_for_a_lock_wait()
    may_commit.set()
    first.join(10)
    second.join(10)
    return errors


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


def open_transactions(database_uri: str) -> int:
    """How many other sessions of this PostgreSQL database are inside a transaction now,
    counted on a connection of its own (for a test server to call while it holds a request:
    a provider or a receiver is called with no transaction open)."""
    engine = sa.create_engine(database_uri)
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
    finally:
        engine.dispose()
