"""The basket shape shared by earning (orders) and coupons (validation, redemption)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BasketLine:
    index: int  # position in the order, 0-based; discounts are reported per index
    sku: str
    category: str | None
    quantity: int
    unit_price_minor: int

    @property
    def total_minor(self) -> int:
        return self.quantity * self.unit_price_minor


@dataclass(frozen=True)
class Basket:
    currency: str
    channel: str  # loyalty.stores.models.Channel value
    store_id: str | None
    lines: tuple[BasketLine, ...]

    @property
    def total_minor(self) -> int:
        return sum(line.total_minor for line in self.lines)


@dataclass(frozen=True)
class OrderDiscounts:
    """What the coupons redeemed with an order give; earning applies it to the points."""

    total_discount_minor: int = 0
    line_discounts: dict[int, int] = field(default_factory=dict)  # line index -> minor units
    bonus_points: int = 0
    points_multiplier_pct: int = 100  # 200 = double points on the order
    # ({"code": ..., "redemption_id": ..., "discount_minor": ...}, ...)
    redemptions: tuple[dict, ...] = ()
