"""Coupon jobs: release checkout holds past their TTL."""

from __future__ import annotations

from loyalty.clock import utcnow
from loyalty.coupons import operations
from loyalty.queue import job
from loyalty.scheduler import Schedule


@job("default")
def expire_coupon_holds() -> int:
    """Give back the uses of expired coupon holds; returns how many were released."""
    return operations.expire_holds(utcnow())


def schedules() -> list[Schedule]:
    return [Schedule("expire-coupon-holds", 30, expire_coupon_holds)]
