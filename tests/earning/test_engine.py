"""The rules engine is a pure function: examples for each rule kind, and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.basket import Basket, BasketLine, OrderDiscounts
from loyalty.earning.engine import EarnContext, RuleSpec, compute_event_points, compute_points

NOW = datetime(2026, 6, 6, 12, 0, tzinfo=UTC)
ONLINE = EarnContext(channel="online")
IN_STORE = EarnContext(channel="store", store_id="PAR1", region="north")

BASE_ONLINE = RuleSpec(
    1,
    "1 per euro online",
    "base_rate",
    currency="EUR",
    channels=("online",),
    points=1,
    per_minor=100,
)
BASE_STORE = RuleSpec(
    2,
    "2 per euro in store",
    "base_rate",
    currency="EUR",
    channels=("store",),
    points=2,
    per_minor=100,
)


def basket(*lines: tuple[str, str | None, int, int], channel: str = "online") -> Basket:
    return Basket(
        currency="EUR",
        channel=channel,
        store_id="PAR1" if channel == "store" else None,
        lines=tuple(
            BasketLine(index=i, sku=sku, category=category, quantity=q, unit_price_minor=p)
            for i, (sku, category, q, p) in enumerate(lines)
        ),
    )


def earn(b: Basket, rules, context=ONLINE, **kwargs):
    return compute_points(b, rules, context=context, now=NOW, **kwargs)


def test_base_rate_depends_on_the_channel():
    b = basket(("A", "shoes", 1, 10_050))
    assert earn(b, [BASE_ONLINE, BASE_STORE]).total == 100
    in_store = basket(("A", "shoes", 1, 10_050), channel="store")
    assert earn(in_store, [BASE_ONLINE, BASE_STORE], IN_STORE).total == 201


def test_base_rate_needs_the_rule_currency():
    b = Basket("USD", "online", None, (BasketLine(0, "A", None, 1, 10_000),))
    assert earn(b, [BASE_ONLINE]).total == 0


def test_points_are_floored_per_line_after_multipliers():
    double_shoes = RuleSpec(3, "2x shoes", "multiplier", categories=("shoes",), multiplier_pct=150)
    b = basket(("A", "shoes", 1, 199), ("B", "shoes", 1, 199))
    # each line: base floor(1.99) = 1, extra floor(1 * 0.5) = 0
    result = earn(b, [BASE_ONLINE, double_shoes])
    assert result.total == 2
    b = basket(("A", "shoes", 3, 100))
    assert earn(b, [BASE_ONLINE, double_shoes]).total == 4  # 3 + floor(1.5)


def test_category_and_sku_multipliers_apply_to_matching_lines_only():
    rules = [
        BASE_ONLINE,
        RuleSpec(3, "3x shoes", "multiplier", categories=("shoes",), multiplier_pct=300),
        RuleSpec(4, "2x sku B", "multiplier", skus=("B",), multiplier_pct=200),
    ]
    result = earn(
        basket(("A", "shoes", 1, 1000), ("B", "bags", 1, 1000), ("C", None, 1, 1000)), rules
    )
    assert result.total == 30 + 20 + 10
    assert {e.rule_id: e.points for e in result.breakdown} == {1: 30, 3: 20, 4: 10}


def test_fixed_bonus_per_matching_unit_or_per_order():
    per_unit = RuleSpec(5, "50 per sneaker", "bonus", skus=("SNK",), bonus_points=50)
    per_order = RuleSpec(6, "welcome 10", "bonus", bonus_points=10)
    result = earn(
        basket(("SNK", "shoes", 2, 100), ("X", None, 1, 100)), [BASE_ONLINE, per_unit, per_order]
    )
    assert result.total == 3 + 100 + 10


def test_tier_multiplier_multiplies_line_points_but_not_bonuses():
    bonus = RuleSpec(6, "bonus", "bonus", bonus_points=10)
    result = earn(
        basket(("A", None, 1, 1000)),
        [BASE_ONLINE, bonus],
        tier_multiplier_pct=150,
        tier_name="gold",
    )
    assert result.total == 10 + 5 + 10
    assert ("tier", "gold", 5) in {(e.kind, e.name, e.points) for e in result.breakdown}


def test_promotions_count_only_inside_their_window_and_scope():
    weekend = RuleSpec(
        7,
        "double weekend in north",
        "promotion",
        multiplier_pct=200,
        regions=("north",),
        starts_at=NOW - timedelta(days=1),
        ends_at=NOW + timedelta(days=1),
    )
    b = basket(("A", None, 1, 1000), channel="store")
    assert earn(b, [BASE_STORE, weekend], IN_STORE).total == 40
    south = EarnContext(channel="store", store_id="MRS1", region="south")
    assert earn(b, [BASE_STORE, weekend], south).total == 20
    later = compute_points(b, [BASE_STORE, weekend], context=IN_STORE, now=NOW + timedelta(days=1))
    assert later.total == 20  # ends_at is exclusive


def test_minimum_spend_disables_only_that_rule():
    big_basket_bonus = RuleSpec(
        8, "100 over 50 EUR", "bonus", currency="EUR", bonus_points=100, min_spend_minor=5000
    )
    assert earn(basket(("A", None, 1, 4999)), [BASE_ONLINE, big_basket_bonus]).total == 49
    assert earn(basket(("A", None, 1, 5000)), [BASE_ONLINE, big_basket_bonus]).total == 150


def test_order_cap_bounds_rule_points_and_shows_in_the_breakdown():
    cap = RuleSpec(9, "max 500", "order_cap", max_points=500)
    result = earn(basket(("A", None, 10, 100_000)), [BASE_ONLINE, cap])
    assert result.total == 500
    assert sum(e.points for e in result.breakdown) == 500
    assert any(e.kind == "order_cap" and e.points == -9_500 for e in result.breakdown)


def test_coupon_discounts_reduce_the_earning_base_and_coupon_points_add_after_the_cap():
    cap = RuleSpec(9, "max 5", "order_cap", max_points=5)
    discounts = OrderDiscounts(
        total_discount_minor=500, line_discounts={0: 500}, bonus_points=7, points_multiplier_pct=200
    )
    result = earn(basket(("A", None, 1, 1000)), [BASE_ONLINE, cap], discounts=discounts)
    assert result.total == 5 + 5 + 7


def test_inactive_rules_and_event_rules_do_not_price_baskets():
    inactive = RuleSpec(1, "off", "base_rate", currency="EUR", points=1, per_minor=1, active=False)
    event = RuleSpec(2, "signup", "event_bonus", activity_kind="signup", bonus_points=100)
    assert earn(basket(("A", None, 1, 1000)), [inactive, event]).total == 0


def test_event_bonus_pays_the_rules_for_that_activity():
    rules = [
        RuleSpec(1, "signup", "event_bonus", activity_kind="signup", bonus_points=100),
        RuleSpec(2, "signup extra", "event_bonus", activity_kind="signup", bonus_points=50),
        RuleSpec(3, "checkin", "event_bonus", activity_kind="app_checkin", bonus_points=5),
    ]
    assert compute_event_points("signup", rules, context=ONLINE, now=NOW).total == 150
    assert compute_event_points("birthday", rules, context=ONLINE, now=NOW).total == 0


# --- properties -----------------------------------------------------------------------------

lines_strategy = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", "C"]),
        st.sampled_from(["shoes", "bags", None]),
        st.integers(1, 50),
        st.integers(0, 1_000_000),
    ),
    min_size=1,
    max_size=6,
)
rule_strategy = st.one_of(
    st.builds(
        lambda p, q, ch: RuleSpec(
            None, "base", "base_rate", currency="EUR", points=p, per_minor=q, channels=ch
        ),
        st.integers(1, 10),
        st.integers(1, 1000),
        st.sampled_from([None, ("online",)]),
    ),
    st.builds(
        lambda pct, cats: RuleSpec(None, "mult", "multiplier", multiplier_pct=pct, categories=cats),
        st.integers(100, 500),
        st.sampled_from([None, ("shoes",)]),
    ),
    st.builds(
        lambda b, skus: RuleSpec(None, "bonus", "bonus", bonus_points=b, skus=skus),
        st.integers(0, 1000),
        st.sampled_from([None, ("A",)]),
    ),
    st.builds(lambda m: RuleSpec(None, "cap", "order_cap", max_points=m), st.integers(0, 100_000)),
    st.builds(
        lambda s: RuleSpec(
            None, "min", "bonus", currency="EUR", bonus_points=10, min_spend_minor=s
        ),
        st.integers(0, 5_000_000),
    ),
)
rules_strategy = st.lists(rule_strategy, max_size=6).map(
    lambda rules: [RuleSpec(**{**r.__dict__, "id": i + 1}) for i, r in enumerate(rules)]
)
coupon_strategy = st.builds(
    lambda bonus, pct: OrderDiscounts(bonus_points=bonus, points_multiplier_pct=pct),
    st.integers(0, 1000),
    st.integers(100, 300),
)


@settings(max_examples=50, deadline=None)
@given(
    lines=lines_strategy,
    rules=rules_strategy,
    tier=st.integers(100, 300),
    discounts=coupon_strategy,
)
def test_points_are_never_negative_and_the_breakdown_sums_to_the_total(
    lines, rules, tier, discounts
):
    result = earn(basket(*lines), rules, tier_multiplier_pct=tier, discounts=discounts)
    assert result.total >= 0
    assert sum(entry.points for entry in result.breakdown) == result.total


@settings(max_examples=50, deadline=None)
@given(lines=lines_strategy, rules=rules_strategy)
def test_the_order_cap_is_respected(lines, rules):
    caps = [r.max_points for r in rules if r.kind == "order_cap"]
    result = earn(basket(*lines), rules)
    if caps:
        assert result.total <= min(caps)


@settings(max_examples=50, deadline=None)
@given(
    lines=lines_strategy,
    extra_quantity=st.integers(0, 20),
    extra_price=st.integers(0, 10_000),
    rate=st.integers(1, 10),
    per=st.integers(1, 1000),
    tier=st.integers(100, 300),
)
def test_base_points_grow_with_spend(lines, extra_quantity, extra_price, rate, per, tier):
    rules = [RuleSpec(1, "base", "base_rate", currency="EUR", points=rate, per_minor=per)]
    smaller = basket(*lines)
    sku, category, quantity, price = lines[0]
    bigger = basket((sku, category, quantity + extra_quantity, price + extra_price), *lines[1:])
    assert (
        earn(bigger, rules, tier_multiplier_pct=tier).total
        >= earn(smaller, rules, tier_multiplier_pct=tier).total
    )


@settings(max_examples=50, deadline=None)
@given(lines=lines_strategy)
def test_the_engine_is_deterministic_and_needs_no_database(lines):
    rules = [BASE_ONLINE, RuleSpec(3, "x", "multiplier", multiplier_pct=250)]
    assert earn(basket(*lines), rules) == earn(basket(*lines), rules)
