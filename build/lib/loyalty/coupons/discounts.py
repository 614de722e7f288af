"""Offer terms and the discount calculation: pure functions, no database, no clock.

Order of application (stacking)
    Coupons that apply together are applied one after the other, each to what is left of
    every line after the coupons before it. The order is: `priority` ascending (lower
    first, default 100), then by kind: free item, percent, fixed amount, then the points
    kinds (bonus points, points multiplier), then the order the codes were given in.
    So with a 10 % coupon and a 5.00 fixed coupon of equal priority, the 10 % is taken off
    first and the 5.00 from the rest.

Rounding (minor units, never fractions)
    - percent: each eligible line gets floor(remaining * basis_points / 10000); the
      customer never gets a fraction of a minor unit. With `max_discount_minor`, the cap is
      taken from the eligible lines in basket order (each line gives up to its own share).
    - fixed amount: capped at what is left on the eligible lines; spread over them in
      proportion to what is left on each (floored), the leftover minor units added one
      line at a time in basket order.
    - free item: up to `free_quantity` units of `free_sku`, cheapest lines first, each
      unit worth its unit price (bounded by what is left on the line).
    A coupon's total is always the sum of its line discounts; no line ever goes below zero,
    so the basket's total discount never exceeds the basket.

Points kinds give no money: bonus points add up; of several multipliers the largest
applies (multipliers don't compound).

Minimum spend is measured on the eligible lines' original totals, before any coupon.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from loyalty.basket import BasketLine

BASIS_POINTS = 10_000


class OfferKind(enum.StrEnum):
    PERCENT = "percent"
    FIXED_AMOUNT = "fixed_amount"
    FREE_ITEM = "free_item"
    BONUS_POINTS = "bonus_points"
    POINTS_MULTIPLIER = "points_multiplier"


class Stacking(enum.StrEnum):
    EXCLUSIVE = "exclusive"  # never combined with another code
    STACKABLE = "stackable"  # combined with codes of the same stack group


KIND_ORDER = {
    OfferKind.FREE_ITEM: 0,
    OfferKind.PERCENT: 1,
    OfferKind.FIXED_AMOUNT: 2,
    OfferKind.BONUS_POINTS: 3,
    OfferKind.POINTS_MULTIPLIER: 4,
}
DEFAULT_STACK_GROUP = "default"


@dataclass(frozen=True)
class OfferTerms:
    """One version of an offer's terms, as stored in `coupon_offer_versions.terms`."""

    kind: OfferKind
    percent_bp: int | None = None  # 1..10000 (1500 = 15 %)
    max_discount_minor: int | None = None
    amount_minor: int | None = None
    free_sku: str | None = None
    free_quantity: int = 1
    bonus_points: int | None = None
    points_multiplier_pct: int | None = None  # 200 = double points
    currency: str | None = None  # for every money amount (fixed, caps, min spend)
    min_spend_minor: int = 0
    eligible_skus: frozenset[str] = frozenset()
    excluded_skus: frozenset[str] = frozenset()
    eligible_categories: frozenset[str] = frozenset()
    excluded_categories: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()  # empty: every channel
    store_ids: frozenset[str] = frozenset()  # with regions: the store must match one
    regions: frozenset[str] = frozenset()
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    valid_days_after_issue: int | None = None
    max_redemptions: int | None = None  # snapshot of the offer's caps, for display
    per_member_limit: int | None = None
    budget_minor: int | None = None
    stacking: Stacking = Stacking.EXCLUSIVE
    stack_group: str | None = None
    priority: int = 100

    @property
    def gives_money(self) -> bool:
        return self.kind in {OfferKind.PERCENT, OfferKind.FIXED_AMOUNT, OfferKind.FREE_ITEM}

    @property
    def group(self) -> str:
        return self.stack_group or DEFAULT_STACK_GROUP

    def combines_with(self, other: OfferTerms) -> bool:
        return (
            self.stacking == Stacking.STACKABLE
            and other.stacking == Stacking.STACKABLE
            and self.group == other.group
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name, value in data.items():
            if isinstance(value, frozenset):
                data[name] = sorted(value)
            elif isinstance(value, datetime):
                data[name] = value.isoformat()
            elif isinstance(value, enum.Enum):
                data[name] = value.value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OfferTerms:
        values: dict[str, Any] = dict(data)
        for name in (
            "eligible_skus",
            "excluded_skus",
            "eligible_categories",
            "excluded_categories",
            "channels",
            "store_ids",
            "regions",
        ):
            values[name] = frozenset(values.get(name) or ())
        for name in ("valid_from", "valid_until"):
            if values.get(name):
                values[name] = datetime.fromisoformat(values[name])
        values["kind"] = OfferKind(values["kind"])
        values["stacking"] = Stacking(values.get("stacking", Stacking.EXCLUSIVE))
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in known})


def line_is_eligible(terms: OfferTerms, line: BasketLine) -> bool:
    """Included (by SKU or category, when lists are given) and not excluded."""
    if line.sku in terms.excluded_skus:
        return False
    if line.category is not None and line.category in terms.excluded_categories:
        return False
    if not terms.eligible_skus and not terms.eligible_categories:
        return True
    return line.sku in terms.eligible_skus or (
        line.category is not None and line.category in terms.eligible_categories
    )


def eligible_spend(terms: OfferTerms, lines: Iterable[BasketLine]) -> int:
    return sum(line.total_minor for line in lines if line_is_eligible(terms, line))


@dataclass(frozen=True)
class CouponDiscount:
    """What one coupon gives on one basket."""

    key: str
    line_discounts: dict[int, int] = field(default_factory=dict)  # line index -> minor
    bonus_points: int = 0
    points_multiplier_pct: int = 100

    @property
    def total_minor(self) -> int:
        return sum(self.line_discounts.values())


def application_order(
    coupons: Sequence[tuple[str, OfferTerms]],
) -> list[tuple[str, OfferTerms]]:
    """Coupons in the order they are applied (see the module docstring)."""
    positioned = list(enumerate(coupons))
    positioned.sort(key=lambda item: (item[1][1].priority, KIND_ORDER[item[1][1].kind], item[0]))
    return [coupon for _, coupon in positioned]


def compute_discounts(
    lines: Sequence[BasketLine], coupons: Sequence[tuple[str, OfferTerms]]
) -> dict[str, CouponDiscount]:
    """Apply `coupons` (key, terms) to the basket lines in application order."""
    remaining = {line.index: line.total_minor for line in lines}
    results: dict[str, CouponDiscount] = {}
    for key, terms in application_order(coupons):
        taken = _line_discounts(terms, lines, remaining)
        for index, amount in taken.items():
            remaining[index] -= amount
        results[key] = CouponDiscount(
            key=key,
            line_discounts={i: d for i, d in taken.items() if d},
            bonus_points=terms.bonus_points or 0 if terms.kind == OfferKind.BONUS_POINTS else 0,
            points_multiplier_pct=terms.points_multiplier_pct or 100
            if terms.kind == OfferKind.POINTS_MULTIPLIER
            else 100,
        )
    return results


def _line_discounts(
    terms: OfferTerms, lines: Sequence[BasketLine], remaining: Mapping[int, int]
) -> dict[int, int]:
    if terms.kind == OfferKind.PERCENT:
        return _percent(terms, lines, remaining)
    if terms.kind == OfferKind.FIXED_AMOUNT:
        return _fixed(terms, lines, remaining)
    if terms.kind == OfferKind.FREE_ITEM:
        return _free_item(terms, lines, remaining)
    return {}


def _percent(
    terms: OfferTerms, lines: Sequence[BasketLine], remaining: Mapping[int, int]
) -> dict[int, int]:
    bp = terms.percent_bp or 0
    raw = {
        line.index: remaining[line.index] * bp // BASIS_POINTS
        for line in lines
        if line_is_eligible(terms, line)
    }
    cap = terms.max_discount_minor
    if cap is None or sum(raw.values()) <= cap:
        return raw
    capped: dict[int, int] = {}
    left = cap
    for index in sorted(raw):
        capped[index] = min(raw[index], left)
        left -= capped[index]
    return capped


def _fixed(
    terms: OfferTerms, lines: Sequence[BasketLine], remaining: Mapping[int, int]
) -> dict[int, int]:
    eligible = sorted(line.index for line in lines if line_is_eligible(terms, line))
    pool = sum(remaining[i] for i in eligible)
    amount = min(terms.amount_minor or 0, pool)
    if amount <= 0:
        return {}
    shares = {i: amount * remaining[i] // pool for i in eligible}
    leftover = amount - sum(shares.values())
    for i in eligible:
        if leftover == 0:
            break
        extra = min(leftover, remaining[i] - shares[i])
        shares[i] += extra
        leftover -= extra
    return shares


def _free_item(
    terms: OfferTerms, lines: Sequence[BasketLine], remaining: Mapping[int, int]
) -> dict[int, int]:
    matching = sorted(
        (line for line in lines if line.sku == terms.free_sku and line_is_eligible(terms, line)),
        key=lambda line: (line.unit_price_minor, line.index),
    )
    units_left = terms.free_quantity
    taken: dict[int, int] = {}
    for line in matching:
        if units_left <= 0:
            break
        units = min(units_left, line.quantity)
        taken[line.index] = min(remaining[line.index], units * line.unit_price_minor)
        units_left -= units
    return taken
