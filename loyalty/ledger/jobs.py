"""Ledger jobs: expire due points, release pending points, expire checkout holds."""

from __future__ import annotations

from loyalty.clock import utcnow
from loyalty.ledger import operations
from loyalty.queue import job
from loyalty.scheduler import Schedule


@job("ledger")
def expire_points() -> int:
    return operations.expire_points(utcnow())


@job("ledger")
def release_pending_points() -> int:
    return operations.release_pending_points(utcnow())


@job("ledger")
def expire_holds() -> int:
    return operations.expire_holds(utcnow())


@job("ledger")
def announce_expiring_points() -> int:
    return operations.announce_expiring_points(utcnow())


def schedules() -> list[Schedule]:
    return [
        Schedule("announce-expiring-points", 86400, announce_expiring_points),
        Schedule("expire-holds", 30, expire_holds),
        Schedule("release-pending-points", 600, release_pending_points),
        Schedule("expire-points", 3600, expire_points),
    ]
