"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_smorest import Blueprint

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
    """The database and Redis answer.

    Without REDIS_URL the queue is the in-process one (embedded default): `redis` then says
    `embedded`, not `ok` for a server that isn't there.
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
    return {"status": "ready" if ready else "not-ready", "checks": checks}, 200 if ready else 503
