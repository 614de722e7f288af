"""Coupon test helpers: offers, codes and baskets built through the real operations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty.basket import Basket, BasketLine
from loyalty.clock import utcnow
from loyalty.coupons import offers
from loyalty.coupons.models import CouponCode, CouponOffer
from loyalty.db import db

SHOES = {"sku": "SHOE-1", "category": "shoes", "quantity": 1, "unit_price_minor": 10_000}
SOCKS = {"sku": "SOCK-1", "category": "socks", "quantity": 2, "unit_price_minor": 500}


def offer(**terms: Any) -> CouponOffer:
    """A committed offer; 10 % off by default."""
    data = {"name": "Test offer", "kind": "percent", "percent_bp": 1000, "currency": "EUR"}
    data.update(terms)
    created = offers.create_offer(data, now=utcnow(), actor="test")
    db.session.commit()
    return created


def codes(
    offer_id: int, count: int = 1, *, max_uses: int | None = 1, now: datetime | None = None
) -> list[str]:
    batch = offers.generate_codes(offer_id, count, now=now or utcnow(), max_uses=max_uses)
    db.session.commit()
    return list(
        db.session.scalars(
            sa.select(CouponCode.code)
            .where(CouponCode.batch_id == batch.id)
            .order_by(CouponCode.id)
        )
    )


def shared(offer_id: int, code: str, *, max_uses: int | None = None) -> str:
    created = offers.create_shared_code(
        offer_id, code, max_uses=max_uses, now=utcnow(), actor="test"
    )
    db.session.commit()
    return created.code


def body(
    codes: list[str],
    *,
    lines: list[dict] | None = None,
    channel: str = "store",
    store_id: str | None = None,
    currency: str = "EUR",
    **extra: Any,
) -> dict[str, Any]:
    data = {
        "codes": codes,
        "channel": channel,
        "currency": currency,
        "lines": lines or [SHOES, SOCKS],
        **extra,
    }
    if store_id is not None:
        data["store_id"] = store_id
    return data


def basket(
    lines: list[dict] | None = None,
    *,
    channel: str = "store",
    store_id: str | None = None,
    currency: str = "EUR",
) -> Basket:
    return Basket(
        currency=currency,
        channel=channel,
        store_id=store_id,
        lines=tuple(
            BasketLine(
                index=i,
                sku=ln["sku"],
                category=ln.get("category"),
                quantity=ln["quantity"],
                unit_price_minor=ln["unit_price_minor"],
            )
            for i, ln in enumerate(lines or [SHOES, SOCKS])
        ),
    )


def code_row(code: str) -> CouponCode:
    db.session.expire_all()
    return db.session.scalar(sa.select(CouponCode).where(CouponCode.code == code))
