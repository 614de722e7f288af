"""The outbox's and the purges' statements use indexes at tens of thousands of rows, in the
plans PostgreSQL makes for them as sent (custom) and as prepared statements (generic).

The statements are captured while the real operations run over seeded tables, then each is
explained both ways; none may read outbox_events, outbox_deliveries or idempotency_keys
with a sequential scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from psycopg.sql import Literal

from loyalty import idempotency
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.outbox import admin
from loyalty.outbox.erasure import erase_delivery_errors
from tests.outbox.conftest import relay

EVENTS = 50_000
WATCHED = {"outbox_events", "outbox_deliveries", "idempotency_keys"}


def _seed() -> None:
    statements = [
        f"""INSERT INTO outbox_events (topic, member_id, payload, occurred_at, dispatched_at)
            SELECT 't.x', mod(g, 5000), '{{}}'::jsonb,
                   now() - interval '30 days' + g * interval '30 seconds',
                   now() - interval '30 days' + g * interval '30 seconds'
            FROM generate_series(1, {EVENTS}) g""",
        """INSERT INTO outbox_deliveries (event_id, consumer, member_id, status, attempts,
                next_attempt_at, created_at, updated_at, done_at)
            SELECT e.id, c.name, e.member_id, 'done', 1, e.dispatched_at, e.dispatched_at,
                   e.dispatched_at, e.dispatched_at
            FROM outbox_events e CROSS JOIN (VALUES ('test.a'), ('test.b')) AS c(name)
            WHERE e.dispatched_at IS NOT NULL""",
        # A backlog: the newest 300 events still pending for test.b, 40 dead letters for test.a.
        f"""UPDATE outbox_deliveries SET status = 'pending', done_at = NULL,
                next_attempt_at = now() - interval '1 minute'
            WHERE consumer = 'test.b' AND event_id > {EVENTS - 300}""",
        f"""UPDATE outbox_deliveries SET status = 'dead', done_at = NULL, last_error = 'x'
            WHERE consumer = 'test.a' AND event_id BETWEEN {EVENTS - 1000} AND {EVENTS - 961}""",
        """INSERT INTO outbox_events (topic, member_id, payload, occurred_at)
            SELECT 't.x', mod(g, 5000), '{}'::jsonb, now() FROM generate_series(1, 200) g""",
        f"""INSERT INTO idempotency_keys (scope, key, fingerprint, status_code, created_at)
            SELECT 'client:1', 'k' || g, 'f', 200,
                   now() - interval '60 days' + g * interval '100 seconds'
            FROM generate_series(1, {EVENTS}) g""",
        # The member whose erasure is planned below (events name members by id only).
        """INSERT INTO members (id, status, locale, timezone, attributes, created_at, updated_at)
            VALUES (42, 'active', 'en', 'UTC', '{}', now(), now())""",
        "ANALYZE outbox_events",
        "ANALYZE outbox_deliveries",
        "ANALYZE idempotency_keys",
    ]
    with db.engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)


@contextmanager
def _captured(watched: set[str] = WATCHED) -> Iterator[list[tuple[str, Any]]]:
    """Each distinct statement naming a `watched` table, with its parameters."""
    seen: list[tuple[str, Any]] = []

    texts: set[str] = set()

    def listener(conn, cursor, statement, parameters, context, executemany) -> None:
        # Each distinct statement once (the 700 "record done" UPDATEs share one text).
        if not executemany and statement not in texts and any(t in statement for t in watched):
            texts.add(statement)
            seen.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listener)


def _seq_scans(plan: Any, watched: set[str] = WATCHED) -> list[str]:
    found = []
    if isinstance(plan, dict):
        if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in watched:
            found.append(plan["Relation Name"])
        for value in plan.values():
            found += _seq_scans(value, watched)
    elif isinstance(plan, list):
        for item in plan:
            found += _seq_scans(item, watched)
    return found


def _plans(statement: str, parameters: Any) -> dict[str, Any]:
    """The custom plan (parameters known) and the generic plan (a prepared statement)."""
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
    numbered = statement
    for position, name in enumerate(names, start=1):
        numbered = numbered.replace(f"%({name})s", f"${position}")
    with db.engine.connect() as connection:
        raw = connection.connection.driver_connection
        arguments = ", ".join(Literal(parameters[name]).as_string(raw) for name in names)
        custom = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
        plans = {"custom": custom.scalar()}
        connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        connection.exec_driver_sql(f"PREPARE checked AS {numbered}")
        execute = f"EXECUTE checked({arguments})" if names else "EXECUTE checked"
        plans["generic"] = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {execute}").scalar()
        connection.exec_driver_sql("DEALLOCATE checked")
        connection.exec_driver_sql("RESET plan_cache_mode")
        connection.rollback()
    return plans


@pytest.mark.postgres
@pytest.mark.query_plans
def test_relay_dead_letters_backlog_and_purges_use_indexes_at_50k_rows(app, register, make):
    _seed()
    member = make.member()  # after the seed: the seeded events are ids 1..EVENTS
    register("test.a", lambda event: None, "t.x")
    register("test.b", lambda event: None, "t.x")
    now = utcnow()
    with _captured() as statements:
        backlog = admin.backlog(now)
        db.session.commit()
        relay(now, limit=50)
        admin.list_dead_letters(consumer="test.a", limit=20)
        db.session.commit()
        assert admin.retry_dead_letters(now=now, consumer="test.a") == 40
        db.session.rollback()
        admin.purge_published_chunk(now, retention=timedelta(days=7), limit=500)
        db.session.rollback()
        idempotency.purge_expired_chunk(now, 48, limit=500)
        db.session.rollback()
        erase_delivery_errors(member.id, now)
        db.session.rollback()

    assert backlog["due_deliveries"]["test.b"]["count"] == 300
    assert backlog["undispatched_events"]["count"] == 201  # and the member's enrolment
    assert backlog["dead_letters"]["count"] == 40
    assert len(statements) >= 10
    assert any(
        "SKIP LOCKED" in text and "UPDATE outbox_deliveries" in text for text, _ in statements
    )
    scanned = {}
    for statement, parameters in statements:
        if statement.startswith("ANALYZE "):  # the relay refreshing stale statistics
            continue
        for kind, plan in _plans(statement, parameters).items():
            if _seq_scans(plan):
                scanned[f"{kind}: {' '.join(statement.split())[:160]}"] = _seq_scans(plan)
    assert scanned == {}
