"""Liveness and readiness probes; readiness also shows the background work's backlog."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app

from loyalty.api import Blueprint
from loyalty.clock import utcnow
from loyalty.db import db

blp = Blueprint("health", __name__, description="Liveness and readiness")

BOUNDED_COUNT = 1000  # backlog counts stop here ("1000+"): a probe never counts a big table


@blp.route("/healthz")
@blp.doc(security=[])
def healthz() -> dict[str, Any]:
    """The process is up."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.doc(security=[])
def readyz() -> tuple[dict[str, Any], int]:
    """The database and Redis answer (503 otherwise), and what the jobs have yet to do.

    `backlog` is for dashboards and alerts, not for the status: a late job doesn't make
    this web process unready. Each figure comes from one index-backed query (the oldest
    due row, LIMIT 1) or one Redis call: cheap enough for a probe every few seconds.

    Without REDIS_URL the queue is the in-process one (embedded default): `redis` then says
    `embedded`, not `ok` for a server that isn't there.
    """
    checks: dict[str, str] = {}
    try:
        db.session.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # readiness reports, it doesn't crash
        db.session.rollback()
        checks["database"] = f"error: {type(error).__name__}"
    redis = current_app.extensions["omniloyal.redis"]
    if current_app.extensions["omniloyal.settings"].redis_url is None:
        checks["redis"] = "embedded"
    else:
        try:
            redis.ping()
            checks["redis"] = "ok"
        except Exception as error:
            checks["redis"] = f"error: {type(error).__name__}"
    ready = all(value in {"ok", "embedded"} for value in checks.values())
    backlog: dict[str, Any] = {}
    if checks["database"] == "ok":
        backlog.update(_database_backlog(utcnow()))
    if checks["redis"] in {"ok", "embedded"}:
        backlog.update(_queue_backlog(redis))
    body = {"status": "ready" if ready else "not-ready", "checks": checks, "backlog": backlog}
    return body, 200 if ready else 503


def _database_backlog(now: datetime) -> dict[str, Any]:
    from loyalty.coupons.models import CouponRedemption, RedemptionStatus
    from loyalty.ledger.models import HoldStatus, LotStatus, PointHold, PointLot
    from loyalty.outbox.admin import backlog as outbox_backlog

    # Each: the due rows' oldest time, through the partial index on that time.
    probes = {
        "overdue_point_lots": (
            PointLot.expires_at,
            PointLot.expires_at,
            [
                PointLot.status == LotStatus.AVAILABLE.value,
                PointLot.remaining > 0,
                PointLot.expires_at <= now,
            ],
        ),
        "due_pending_points": (
            PointLot.available_at,
            PointLot.available_at,
            [
                PointLot.status == LotStatus.PENDING.value,
                PointLot.remaining > 0,
                PointLot.available_at <= now,
            ],
        ),
        "expired_point_holds": (
            PointHold.expires_at,
            PointHold.expires_at,
            [PointHold.status == HoldStatus.ACTIVE.value, PointHold.expires_at <= now],
        ),
        "expired_coupon_holds": (
            CouponRedemption.expires_at,
            CouponRedemption.expires_at,
            [
                CouponRedemption.status == RedemptionStatus.HELD.value,
                CouponRedemption.expires_at <= now,
            ],
        ),
    }
    backlog: dict[str, Any] = {}
    try:  # undispatched events, due deliveries per consumer, dead letters
        backlog["outbox"] = outbox_backlog(now)
    except sa.exc.SQLAlchemyError as error:  # e.g. a database not migrated yet
        db.session.rollback()
        backlog["outbox"] = {"error": type(error).__name__}
    for name, (moment, order_by, where) in probes.items():
        try:
            backlog[name] = _oldest(moment, order_by, where, now)
        except sa.exc.SQLAlchemyError as error:  # e.g. a database not migrated yet
            db.session.rollback()
            backlog[name] = {"error": type(error).__name__}
    return backlog


def _oldest(moment: Any, order_by: Any, where: list[Any], now: datetime) -> dict[str, Any]:
    oldest = db.session.scalar(sa.select(moment).where(*where).order_by(order_by).limit(1))
    if oldest is None:
        return {"count": 0, "oldest": None, "age_seconds": 0}
    count = db.session.scalar(
        sa.select(sa.func.count()).select_from(
            sa.select(sa.literal(1)).where(*where).limit(BOUNDED_COUNT + 1).subquery()
        )
    )
    return {
        "count": count if count <= BOUNDED_COUNT else f"{BOUNDED_COUNT}+",
        "oldest": oldest.isoformat(),
        "age_seconds": max(0, int((now - oldest).total_seconds())),
    }


def _queue_backlog(redis: Any) -> dict[str, Any]:
    from rq import Queue

    from loyalty.queue import QUEUES
    from loyalty.scheduler import last_tick

    try:
        failed = {name: Queue(name, connection=redis).failed_job_registry.count for name in QUEUES}
        tick = last_tick(redis)
    except Exception as error:  # Redis went away between the ping and now
        return {"jobs": {"error": type(error).__name__}}
    return {
        "failed_jobs": failed,
        "scheduler": {
            "last_tick": datetime.fromtimestamp(tick, UTC).isoformat() if tick else None,
            "age_seconds": max(0, int(time.time() - tick)) if tick else None,
        },
    }
