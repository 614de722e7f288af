"""The embedded default (SQLite): reads never wait for the write lock; writes queue on it."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask

from loyalty.db import db
from tests.conftest import BACKEND
from tests.factories import idem

pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's write lock")

HOLD_SECONDS = 2.0


@contextmanager
def another_writer(app: Flask) -> Iterator[threading.Event]:
    """Another connection (a background job, a CLI import) holds the write lock for
    HOLD_SECONDS, then commits; the yielded event is set once it let go."""
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release() -> None:
        writer.execute("COMMIT")
        released.set()

    timer = threading.Timer(HOLD_SECONDS, release)
    timer.start()
    try:
        yield released
    finally:
        timer.join()
        writer.close()


def test_a_balance_read_does_not_wait_behind_a_write_transaction(app, client, make):
    """Every transaction used to BEGIN IMMEDIATE, so a read queued behind any writer
    (1.7 s seen behind a job; a 500 past the busy timeout)."""
    member_id = make.member(points=25).id
    pos = make.api_key()
    token = make.member_token(member_id)
    db.session.remove()
    with another_writer(app) as released:
        started = time.perf_counter()
        balance = client.get(f"/v1/members/{member_id}/balance", headers=pos)
        mine = client.get("/v1/me/balance", headers=token)
        history = client.get("/v1/me/history", headers=token)
        ready = client.get("/readyz")
        elapsed = time.perf_counter() - started
        assert not released.is_set()  # all of it happened while the lock was held
    assert [r.status_code for r in (balance, mine, history, ready)] == [200] * 4
    assert balance.json["balance"] == 25 and mine.json["balance"] == 25
    assert elapsed < HOLD_SECONDS / 2


def test_a_write_queues_behind_a_write_transaction_and_then_succeeds(app, client, make):
    """Writes still take the write lock at BEGIN, so they wait their turn (busy timeout)
    instead of failing on a snapshot another writer made stale."""
    member_id = make.member(points=25).id
    pos = make.api_key()
    db.session.remove()
    with another_writer(app) as released:
        started = time.perf_counter()
        hold = client.post(f"/v1/members/{member_id}/holds", json={"points": 10}, headers=idem(pos))
        waited = time.perf_counter() - started
        assert released.is_set()
    assert hold.status_code == 201, hold.json
    assert waited > HOLD_SECONDS / 2
    assert client.get(f"/v1/members/{member_id}/balance", headers=pos).json["available"] == 15
