"""Helpers for earning tests: rules, order bodies, posting through the API."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.earning import operations

_orders = itertools.count(1)


def rule(**fields: Any) -> int:
    """Create an earning rule directly (committed); returns its id."""
    created = operations.create_rule(fields, now=utcnow())
    db.session.commit()
    return created.id


def base_rate(points: int = 1, per_minor: int = 100, currency: str = "EUR", **more: Any) -> int:
    return rule(
        name=f"{points} per {per_minor}",
        kind="base_rate",
        currency=currency,
        points=points,
        per_minor=per_minor,
        **more,
    )


def order_body(
    member: dict[str, Any],
    *lines: tuple[str, str | None, int, int],
    order_id: str | None = None,
    channel: str = "online",
    currency: str = "EUR",
    occurred_at: datetime | None = None,
    **more: Any,
) -> dict[str, Any]:
    body = {
        "order_id": order_id or f"ORD-{next(_orders)}",
        "channel": channel,
        "member": member,
        "lines": [
            {"sku": sku, "category": category, "quantity": quantity, "unit_price_minor": price}
            for sku, category, quantity, price in (lines or [("SKU1", "shoes", 1, 10_000)])
        ],
        "currency": currency,
        **more,
    }
    if occurred_at is not None:
        body["occurred_at"] = occurred_at.isoformat()
    return body
