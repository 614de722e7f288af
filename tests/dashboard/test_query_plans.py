"""The dashboard's reads of growing tables go through indexes (PostgreSQL plans at a size
where a sequential scan would be chosen if no index fitted)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from loyalty.dashboard import audit
from loyalty.dashboard.models import AuditEntry
from loyalty.db import db

pytestmark = [pytest.mark.postgres, pytest.mark.query_plans]


def _plan(statement: sa.Select) -> str:  # type: ignore[type-arg]
    compiled = statement.compile(db.engine, compile_kwargs={"literal_binds": True})
    rows = db.session.execute(sa.text(f"EXPLAIN (FORMAT JSON) {compiled}")).scalar()
    return json.dumps(rows)


def test_audit_searches_use_the_audit_indexes(app):
    db.session.connection().exec_driver_sql(
        "INSERT INTO audit_log (at, actor, source, action, target_type, target_id) "
        "SELECT now() - (n || ' seconds')::interval, 'user:' || mod(n, 50) || ':x', "
        "'dashboard', 'points.adjust', 'member', mod(n, 5000)::text "
        "FROM generate_series(1, 30000) AS n"
    )
    db.session.commit()
    db.session.execute(sa.text("ANALYZE audit_log"))
    by_target = audit.AuditQuery(target_type="member", target_id="42")
    statement = (
        sa.select(AuditEntry.id)
        .where(*audit._where(by_target))
        .order_by(AuditEntry.id.desc())
        .limit(50)
    )
    assert "ix_audit_log_target" in _plan(statement)
    newest = sa.select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(50)
    assert "pk_audit_log" in _plan(newest)


def test_a_members_journeys_and_the_counts_per_step_use_the_entry_indexes(app):
    from campaigns import journeys

    connection = db.session.connection()
    connection.exec_driver_sql(
        "INSERT INTO members (id, status, locale, timezone, attributes, created_at, updated_at,"
        " token_epoch) SELECT n, 'active', 'en', 'UTC', '{}', now(), now(), 0"
        " FROM generate_series(1, 5000) AS n"
    )
    connection.exec_driver_sql(
        "INSERT INTO journeys (id, name, kind, status, version, trigger, reentry, created_by,"
        " created_at, updated_at) SELECT n, 'J' || n, 'journey', 'active', 1,"
        " 'member.enrolled', 'always', 't', now(), now() FROM generate_series(1, 40) AS n"
    )
    connection.exec_driver_sql(
        "INSERT INTO journey_entries (journey_id, version, member_id, cause_key, status,"
        " step_index, next_run_at, entered_at, updated_at, state)"
        " SELECT 1 + mod(n, 40), 1, 1 + mod(n, 5000), 'c' || n,"
        " CASE WHEN mod(n, 3) = 0 THEN 'completed' ELSE 'active' END, mod(n, 6), now(),"
        " now() - (n || ' seconds')::interval, now(), '{}' FROM generate_series(1, 60000) AS n"
    )
    db.session.commit()
    db.session.execute(sa.text("ANALYZE members; ANALYZE journeys; ANALYZE journey_entries"))

    assert "ix_journey_entries_member" in _plan(journeys.member_entries_query([42, 4242], 10))
    assert "ix_journey_entries_step" in _plan(journeys.entries_per_step_query([7]))
