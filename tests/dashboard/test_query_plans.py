"""The dashboard's reads of growing tables go through indexes (PostgreSQL plans at a size
where a sequential scan would be chosen if no index fitted)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from loyalty.dashboard import audit
from loyalty.dashboard.models import AuditEntry
from loyalty.db import db

pytestmark = pytest.mark.postgres


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
