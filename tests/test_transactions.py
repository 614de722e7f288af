"""Deadlocks and serialization failures are retried at the edge, never a 500.

The request edge (write_endpoint) and the job edge (queue.job) run the whole transaction
again when PostgreSQL aborts it as retryable; when retries run out a request answers 503
with Retry-After. The failures here are PostgreSQL's own: a real deadlock between two
requests, and errors raised by the server with the retryable SQLSTATEs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, g

from loyalty import outbox
from loyalty.app import create_app
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.http import write_endpoint
from loyalty.outbox import OutboxEvent
from loyalty.queue import job, make_worker
from tests.concurrency import start_in_thread
from tests.factories import idem

pytestmark = pytest.mark.postgres

FAIL = "DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{}'; END $$"
failures_left = {"request": 0, "job": 0}
sqlstates = {"request": "serialization_failure", "job": "deadlock_detected"}


def _maybe_fail(kind: str) -> None:
    if failures_left[kind] > 0:
        failures_left[kind] -= 1
        db.session.execute(sa.text(FAIL.format(sqlstates[kind])))


@pytest.fixture
def edge_app(app: Flask) -> Iterator[tuple[Flask, dict[str, Any]]]:
    """The service with two extra write routes, as a second app on the same database."""
    settings = app.extensions["omniloyal.settings"]
    test_app = create_app(
        {
            "database_url": settings.database_url,
            "redis_url": settings.redis_url,
            "secret_key": settings.secret_key,
            "run_embedded_worker": False,
        }
    )
    test_app.config["TESTING"] = True
    state: dict[str, Any] = {"barrier": threading.Barrier(2)}

    @write_endpoint()
    def flaky() -> Any:
        outbox.emit("test.flaky", member_id=None, payload={}, now=utcnow())
        _maybe_fail("request")
        return {"done": True}, 201

    @write_endpoint()
    def lock_pair() -> Any:
        """Locks two members' rows in the order given, meeting the other request between."""
        first, second = (int(x) for x in g.pair.split(","))
        db.session.execute(
            sa.text("SELECT 1 FROM members WHERE id = :id FOR UPDATE"), {"id": first}
        )
        if not g.get("met"):
            g.met = True
            state["barrier"].wait(timeout=10)
        db.session.execute(
            sa.text("SELECT 1 FROM members WHERE id = :id FOR UPDATE"), {"id": second}
        )
        return {"locked": [first, second]}, 200

    def lock_pair_view(pair: str) -> Any:
        g.pair = pair
        return lock_pair()

    test_app.add_url_rule("/test/flaky", view_func=flaky, methods=["POST"])
    test_app.add_url_rule("/test/lock/<pair>", view_func=lock_pair_view, methods=["POST"])
    yield test_app, state
    failures_left.update(request=0, job=0)
    sqlstates.update(request="serialization_failure", job="deadlock_detected")
    with test_app.app_context():
        db.session.remove()
        db.engine.dispose()


def _events() -> int:
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(OutboxEvent).where(OutboxEvent.topic == "test.flaky")
    )


def test_a_real_deadlock_between_two_requests_is_retried_and_both_succeed(edge_app, make, caplog):
    test_app, _ = edge_app
    caplog.set_level(logging.WARNING)
    a, b = make.member().id, make.member().id
    headers = make.api_key()

    def post(path: str):
        def call() -> int:
            return test_app.test_client().post(path, headers=idem(headers)).status_code

        return call

    one = start_in_thread(test_app, post(f"/test/lock/{a},{b}"))
    other = start_in_thread(test_app, post(f"/test/lock/{b},{a}"))

    assert (one.result(timeout=30), other.result(timeout=30)) == (200, 200)
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 1 and "40P01" in retries[0]


def test_a_serialization_failure_reruns_the_whole_request_once(edge_app, make):
    test_app, _ = edge_app
    headers = idem(make.api_key())
    failures_left["request"] = 1

    response = test_app.test_client().post("/test/flaky", headers=headers)

    assert response.status_code == 201 and response.json == {"done": True}
    assert _events() == 1  # the first attempt's event was rolled back with it
    replay = test_app.test_client().post("/test/flaky", headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"  # the retry's claim was kept


def test_when_retries_run_out_the_answer_is_a_503_with_retry_after_and_nothing_is_kept(
    edge_app, make
):
    test_app, _ = edge_app
    headers = idem(make.api_key())
    failures_left["request"] = 100

    response = test_app.test_client().post("/test/flaky", headers=headers)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.mimetype == "application/problem+json"
    assert response.json["type"].endswith("/database-busy")
    assert _events() == 0
    failures_left["request"] = 0
    again = test_app.test_client().post("/test/flaky", headers=headers)  # same key: not kept
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers


def test_other_database_errors_are_not_retried(edge_app, make):
    test_app, _ = edge_app
    failures_left["request"] = 2
    sqlstates["request"] = "undefined_table"

    with pytest.raises(sa.exc.ProgrammingError):  # a 500 in production: a bug, not contention
        test_app.test_client().post("/test/flaky", headers=idem(make.api_key()))

    assert failures_left["request"] == 1  # ran once


@job("default")
def flaky_job() -> int:
    outbox.emit("test.flaky", member_id=None, payload={}, now=utcnow())
    _maybe_fail("job")
    return 7


def test_a_job_aborted_by_a_deadlock_runs_again_at_the_job_edge(app):
    failures_left["job"] = 2
    queued = flaky_job.enqueue()

    make_worker(app, ("default",)).work(burst=True)

    assert queued.get_status() == "finished" and queued.return_value() == 7
    assert _events() == 1
