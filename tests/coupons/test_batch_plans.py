"""The stalled-batch sweep reads running batches through their partial index, however many
finished batches journeys and campaigns have added (PostgreSQL plans)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.coupons import offers
from loyalty.db import db
from tests.coupons import factories as coupons

pytestmark = [pytest.mark.postgres, pytest.mark.query_plans]


def test_the_stalled_batch_sweep_uses_the_running_batches_index(app):
    offer_id = coupons.offer().id
    db.session.execute(
        sa.text(
            "INSERT INTO coupon_batches (offer_id, kind, requested, created_count, created_at,"
            " created_by, status, updated_at) SELECT :offer, 'issued', 1, 1, now(), 't',"
            " CASE WHEN mod(n, 1000) = 0 THEN 'running' ELSE 'done' END, now()"
            " FROM generate_series(1, 50000) AS n"
        ),
        {"offer": offer_id},
    )
    db.session.commit()
    db.session.execute(sa.text("ANALYZE coupon_batches"))
    captured: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany):
        if "coupon_batches" in statement and not statement.startswith("EXPLAIN"):
            cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
            captured.append(json.dumps(cursor.fetchone()[0]))

    sa.event.listen(db.engine, "before_cursor_execute", explain)
    try:
        found = offers.stalled_batches(utcnow() + timedelta(minutes=1))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", explain)

    assert len(found) == 50
    assert captured and all("ix_coupon_batches_running" in plan for plan in captured)
