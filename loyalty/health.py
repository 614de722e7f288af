"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_smorest import Blueprint

from loyalty.clock import utcnow
from loyalty.db import db

blp = Blueprint("health", __name__, description="Liveness and readiness")


@blp.route("/healthz")
@blp.doc(security=[])
def healthz() -> dict[str, Any]:
    """The process is up."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.doc(security=[])
def readyz() -> tuple[dict[str, Any], int]:
    """The database and Redis answer (503 otherwise), and the outbox's backlog.

    Without REDIS_URL the queue is the in-process one (embedded default): `redis` then says
    `embedded`, not `ok` for a server that isn't there. `backlog` is for dashboards and
    alerts, not for the status: a late relay doesn't make this web process unready.
    """
    checks: dict[str, str] = {}
    try:
        db.session.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # readiness reports, it doesn't crash
        checks["database"] = f"error: {type(error).__name__}"
    if current_app.extensions["omniloyal.settings"].redis_url is None:
        checks["redis"] = "embedded"
    else:
        try:
            current_app.extensions["omniloyal.redis"].ping()
            checks["redis"] = "ok"
        except Exception as error:
            checks["redis"] = f"error: {type(error).__name__}"
    ready = all(value in {"ok", "embedded"} for value in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not-ready", "checks": checks}
    if checks["database"] == "ok":
        body["backlog"] = {"outbox": _outbox_backlog()}
    return body, 200 if ready else 503


def _outbox_backlog() -> dict[str, Any]:
    from loyalty.outbox.admin import backlog

    try:
        return backlog(utcnow())
    except sa.exc.SQLAlchemyError as error:  # e.g. a database not migrated yet
        db.session.rollback()
        return {"error": type(error).__name__}
