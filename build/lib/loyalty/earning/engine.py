"""The earning rules engine: a pure function from a basket and rules to points.

No database, no clock, no Flask: everything it needs is an argument, so the same code
prices an order, an activity event and a "how many points would I get?" preview, and it
can be property-tested in isolation.

How points are computed (all integers; every step floors, so nothing is ever rounded up):

1. Each line's net amount is `quantity * unit_price_minor - coupon line discount` (never
   below zero).
2. Base points per line: for every matching BASE_RATE rule (same currency, channel, store,
   region, time window, minimum spend), `floor(net * points / per_minor)`. Base rules stack.
3. Multipliers per line, on that line's base points B: every matching MULTIPLIER rule and
   every PROMOTION rule with a multiplier adds `floor(B * (multiplier_pct - 100) / 100)`.
   Multipliers are additive: a 2x and a 3x rule on the same line give 1 + 1 + 2 = 4x.
4. Tier multiplier per line, on the line's points after step 3 (S):
   `floor(S * (tier_pct - 100) / 100)`.
   ("Floor per line after multipliers": each line's extra is floored on its own.)
5. Fixed bonuses (BONUS, and PROMOTION with bonus_points): with category/SKU filters, the
   bonus is paid per matching unit (`bonus_points * quantity`); without, once per order.
   Bonuses are not multiplied.
6. Per-order cap: the smallest max_points of the matching ORDER_CAP rules bounds the total
   of steps 2-5; the excess appears as a negative "order_cap" entry.
7. Coupons (from loyalty.basket.OrderDiscounts), after the cap since they are a separate
   promise: `floor(P * (points_multiplier_pct - 100) / 100)` extra on the capped points P,
   then the coupons' bonus_points.

A rule's minimum spend compares the order's net total (sum of step 1) with
`min_spend_minor`: below it, that rule gives nothing. The breakdown has one entry per rule
that gave points (plus the tier, cap and coupon entries) and always sums to the total.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from loyalty.basket import Basket, BasketLine, OrderDiscounts


@dataclass(frozen=True)
class RuleSpec:
    """An earning rule as the engine sees it (see loyalty.earning.models.EarningRule)."""

    id: int | None
    name: str
    kind: str
    currency: str | None = None
    channels: tuple[str, ...] | None = None
    store_ids: tuple[str, ...] | None = None
    regions: tuple[str, ...] | None = None
    categories: tuple[str, ...] | None = None
    skus: tuple[str, ...] | None = None
    points: int = 0
    per_minor: int = 1
    multiplier_pct: int = 100
    bonus_points: int = 0
    min_spend_minor: int | None = None
    max_points: int | None = None
    activity_kind: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    active: bool = True

    def in_window(self, now: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (
            self.ends_at is None or now < self.ends_at
        )

    def matches_line(self, line: BasketLine) -> bool:
        """No category/SKU filter matches every line; with filters, either one matching."""
        if self.categories is None and self.skus is None:
            return True
        return (self.categories is not None and line.category in self.categories) or (
            self.skus is not None and line.sku in self.skus
        )

    @property
    def filters_lines(self) -> bool:
        return self.categories is not None or self.skus is not None


@dataclass(frozen=True)
class EarnContext:
    """Where and when the purchase or activity happened."""

    channel: str | None
    store_id: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class BreakdownEntry:
    kind: str
    points: int
    rule_id: int | None = None
    name: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "rule_id": self.rule_id,
            "name": self.name,
            "kind": self.kind,
            "points": self.points,
        }


@dataclass(frozen=True)
class EarnResult:
    total: int
    breakdown: tuple[BreakdownEntry, ...] = field(default_factory=tuple)


def _scoped(rule: RuleSpec, context: EarnContext, now: datetime, currency: str | None) -> bool:
    """The rule is active, in its time window, and limited to none or this channel/store/region."""
    return (
        rule.active
        and rule.in_window(now)
        and (rule.currency is None or rule.currency == currency)
        and (rule.channels is None or context.channel in rule.channels)
        and (rule.store_ids is None or context.store_id in rule.store_ids)
        and (rule.regions is None or context.region in rule.regions)
    )


def _extra(points: int, pct: int) -> int:
    """The points a multiplier of `pct` percent adds on top of `points` (floored)."""
    return points * (pct - 100) // 100


def compute_points(
    basket: Basket,
    rules: Iterable[RuleSpec],
    *,
    tier_multiplier_pct: int = 100,
    tier_name: str | None = None,
    context: EarnContext,
    now: datetime,
    discounts: OrderDiscounts | None = None,
) -> EarnResult:
    """Points for a basket, with a per-rule breakdown. See the module docstring for rounding.

    `now` is when the purchase happened (promotions are judged at that instant).
    """
    discounts = discounts or OrderDiscounts()
    nets = {
        line.index: max(0, line.total_minor - discounts.line_discounts.get(line.index, 0))
        for line in basket.lines
    }
    order_net = sum(nets.values())
    applicable = [
        rule
        for rule in rules
        if rule.kind != "event_bonus"
        and _scoped(rule, context, now, basket.currency)
        and (rule.min_spend_minor is None or order_net >= rule.min_spend_minor)
    ]
    by_kind: dict[str, list[RuleSpec]] = defaultdict(list)
    for rule in sorted(applicable, key=lambda r: (r.id is None, r.id or 0)):
        by_kind[rule.kind].append(rule)
    multipliers = [
        r for r in by_kind["multiplier"] + by_kind["promotion"] if r.multiplier_pct > 100
    ]
    earned: dict[tuple[str, int | None, str], int] = defaultdict(int)
    for line in basket.lines:
        net = nets[line.index]
        base = 0
        for rule in by_kind["base_rate"]:
            if rule.matches_line(line):
                points = net * rule.points // rule.per_minor
                earned[(rule.kind, rule.id, rule.name)] += points
                base += points
        line_points = base
        for rule in multipliers:
            if rule.matches_line(line):
                extra = _extra(base, rule.multiplier_pct)
                earned[(rule.kind, rule.id, rule.name)] += extra
                line_points += extra
        if tier_multiplier_pct > 100:
            earned[("tier", None, tier_name or "tier")] += _extra(line_points, tier_multiplier_pct)
    for rule in by_kind["bonus"] + by_kind["promotion"]:
        if rule.bonus_points <= 0:
            continue
        if rule.filters_lines:
            units = sum(line.quantity for line in basket.lines if rule.matches_line(line))
            bonus = rule.bonus_points * units
        else:
            bonus = rule.bonus_points
        earned[(rule.kind, rule.id, rule.name)] += bonus
    breakdown = [
        BreakdownEntry(kind=kind, points=points, rule_id=rule_id, name=name)
        for (kind, rule_id, name), points in earned.items()
        if points > 0
    ]
    total = sum(entry.points for entry in breakdown)
    caps = [rule for rule in by_kind["order_cap"] if rule.max_points is not None]
    if caps:
        cap = min(caps, key=lambda r: r.max_points or 0)
        assert cap.max_points is not None
        if total > cap.max_points:
            breakdown.append(BreakdownEntry("order_cap", cap.max_points - total, cap.id, cap.name))
            total = cap.max_points
    if discounts.points_multiplier_pct > 100 and total > 0:
        extra = _extra(total, discounts.points_multiplier_pct)
        if extra:
            breakdown.append(BreakdownEntry("coupon_multiplier", extra, None, "coupons"))
            total += extra
    if discounts.bonus_points > 0:
        breakdown.append(BreakdownEntry("coupon_bonus", discounts.bonus_points, None, "coupons"))
        total += discounts.bonus_points
    return EarnResult(total=total, breakdown=tuple(breakdown))


def compute_event_points(
    activity_kind: str, rules: Sequence[RuleSpec], *, context: EarnContext, now: datetime
) -> EarnResult:
    """Points for a non-purchase activity: every active EVENT_BONUS rule for that kind."""
    breakdown = tuple(
        BreakdownEntry("event_bonus", rule.bonus_points, rule.id, rule.name)
        for rule in sorted(rules, key=lambda r: (r.id is None, r.id or 0))
        if rule.kind == "event_bonus"
        and rule.activity_kind == activity_kind
        and rule.bonus_points > 0
        and _scoped(rule, context, now, currency=None)
    )
    return EarnResult(total=sum(entry.points for entry in breakdown), breakdown=breakdown)
