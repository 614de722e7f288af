"""The discount calculation (pure): bounds, rounding, stacking order, by example and by
property."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.basket import BasketLine
from loyalty.coupons.discounts import (
    OfferKind,
    OfferTerms,
    Stacking,
    application_order,
    compute_discounts,
)


def line(index: int, sku: str, price: int, quantity: int = 1, category: str | None = None):
    return BasketLine(index, sku, category, quantity, price)


PERCENT_10 = OfferTerms(kind=OfferKind.PERCENT, percent_bp=1000)
FIVE_OFF = OfferTerms(kind=OfferKind.FIXED_AMOUNT, amount_minor=500, currency="EUR")


class TestExamples:
    def test_percent_discounts_floor_on_each_line(self):
        result = compute_discounts([line(0, "A", 999), line(1, "B", 5)], [("P", PERCENT_10)])
        assert result["P"].line_discounts == {0: 99}  # 99.9 -> 99, 0.5 -> 0
        assert result["P"].total_minor == 99

    def test_a_percent_cap_is_taken_from_lines_in_basket_order(self):
        capped = OfferTerms(kind=OfferKind.PERCENT, percent_bp=5000, max_discount_minor=700)
        result = compute_discounts([line(0, "A", 1000), line(1, "B", 1000)], [("P", capped)])
        assert result["P"].line_discounts == {0: 500, 1: 200}

    def test_a_fixed_amount_is_spread_in_proportion_with_leftover_cents_in_basket_order(self):
        result = compute_discounts(
            [line(0, "A", 100), line(1, "B", 100), line(2, "C", 100)], [("F", FIVE_OFF)]
        )
        assert result["F"].line_discounts == {0: 100, 1: 100, 2: 100}  # capped at the basket
        ten = OfferTerms(kind=OfferKind.FIXED_AMOUNT, amount_minor=10)
        result = compute_discounts(
            [line(0, "A", 100), line(1, "B", 100), line(2, "C", 100)], [("F", ten)]
        )
        assert result["F"].line_discounts == {0: 4, 1: 3, 2: 3}

    def test_percent_applies_before_fixed_at_equal_priority_whatever_the_code_order(self):
        basket = [line(0, "A", 10_000)]
        stack = [("F", FIVE_OFF), ("P", PERCENT_10)]
        result = compute_discounts(basket, stack)
        assert result["P"].total_minor == 1000  # 10 % of 100.00
        assert result["F"].total_minor == 500  # then 5.00 off the 90.00 left

    def test_a_lower_priority_number_applies_first(self):
        first = OfferTerms(kind=OfferKind.FIXED_AMOUNT, amount_minor=5000, priority=1)
        result = compute_discounts([line(0, "A", 10_000)], [("P", PERCENT_10), ("F", first)])
        assert result["F"].total_minor == 5000
        assert result["P"].total_minor == 500  # 10 % of what was left

    def test_excluded_skus_and_categories_get_nothing(self):
        terms = OfferTerms(
            kind=OfferKind.PERCENT, percent_bp=5000,
            excluded_skus=frozenset({"GIFT"}), excluded_categories=frozenset({"tobacco"}),
        )  # fmt: skip
        basket = [line(0, "GIFT", 1000), line(1, "CIG", 1000, category="tobacco"),
                  line(2, "SHOE", 1000, category="shoes")]  # fmt: skip
        assert compute_discounts(basket, [("P", terms)])["P"].line_discounts == {2: 500}

    def test_eligible_lists_include_by_sku_or_category(self):
        terms = OfferTerms(
            kind=OfferKind.PERCENT, percent_bp=5000,
            eligible_skus=frozenset({"HAT"}), eligible_categories=frozenset({"shoes"}),
        )  # fmt: skip
        basket = [line(0, "HAT", 1000), line(1, "X", 1000, category="shoes"), line(2, "Y", 1000)]
        assert compute_discounts(basket, [("P", terms)])["P"].line_discounts == {0: 500, 1: 500}

    def test_a_free_item_takes_the_cheapest_matching_units(self):
        terms = OfferTerms(kind=OfferKind.FREE_ITEM, free_sku="SOCK", free_quantity=2)
        basket = [line(0, "SOCK", 700, quantity=1), line(1, "SOCK", 500, quantity=3)]
        assert compute_discounts(basket, [("S", terms)])["S"].line_discounts == {1: 1000}

    def test_points_offers_give_points_not_money(self):
        bonus = OfferTerms(kind=OfferKind.BONUS_POINTS, bonus_points=250)
        double = OfferTerms(kind=OfferKind.POINTS_MULTIPLIER, points_multiplier_pct=200)
        result = compute_discounts([line(0, "A", 1000)], [("B", bonus), ("D", double)])
        assert result["B"].total_minor == result["D"].total_minor == 0
        assert (result["B"].bonus_points, result["D"].points_multiplier_pct) == (250, 200)

    def test_stacking_needs_both_stackable_and_the_same_group(self):
        a = OfferTerms(kind=OfferKind.PERCENT, percent_bp=1, stacking=Stacking.STACKABLE)
        b = OfferTerms(kind=OfferKind.PERCENT, percent_bp=1, stacking=Stacking.STACKABLE)
        c = OfferTerms(kind=OfferKind.PERCENT, percent_bp=1, stacking=Stacking.STACKABLE,
                       stack_group="vip")  # fmt: skip
        assert a.combines_with(b)
        assert not a.combines_with(c)
        assert not a.combines_with(PERCENT_10)  # exclusive

    def test_terms_survive_a_round_trip_through_json(self):
        terms = OfferTerms(kind=OfferKind.PERCENT, percent_bp=1500, channels=frozenset({"app"}))
        assert OfferTerms.from_json(terms.to_json()) == terms


# --- properties --------------------------------------------------------------------------------

lines_strategy = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", "C", "D"]),
        st.sampled_from([None, "shoes", "socks"]),
        st.integers(min_value=1, max_value=5),
        st.integers(min_value=0, max_value=100_000),
    ),
    min_size=1,
    max_size=6,
).map(lambda items: [BasketLine(i, *item) for i, item in enumerate(items)])

terms_strategy = st.one_of(
    st.builds(
        OfferTerms,
        kind=st.just(OfferKind.PERCENT),
        percent_bp=st.integers(1, 10_000),
        max_discount_minor=st.one_of(st.none(), st.integers(0, 50_000)),
        excluded_skus=st.frozensets(st.sampled_from(["A", "B"]), max_size=1),
        priority=st.integers(0, 3),
    ),
    st.builds(
        OfferTerms,
        kind=st.just(OfferKind.FIXED_AMOUNT),
        amount_minor=st.integers(1, 500_000),
        eligible_categories=st.frozensets(st.sampled_from(["shoes", "socks"]), max_size=2),
        priority=st.integers(0, 3),
    ),
    st.builds(
        OfferTerms,
        kind=st.just(OfferKind.FREE_ITEM),
        free_sku=st.sampled_from(["A", "B", "Z"]),
        free_quantity=st.integers(1, 4),
        priority=st.integers(0, 3),
    ),
    st.builds(OfferTerms, kind=st.just(OfferKind.BONUS_POINTS), bonus_points=st.integers(1, 999)),
)
stack_strategy = st.lists(terms_strategy, min_size=1, max_size=4).map(
    lambda terms: [(f"K{i}", t) for i, t in enumerate(terms)]
)


@settings(max_examples=50, deadline=None)
@given(lines=lines_strategy, stack=stack_strategy)
def test_discounts_are_never_negative_and_never_exceed_a_line_or_the_basket(lines, stack):
    result = compute_discounts(lines, stack)
    per_line: dict[int, int] = {}
    for discount in result.values():
        for index, amount in discount.line_discounts.items():
            assert amount >= 0
            per_line[index] = per_line.get(index, 0) + amount
    for basket_line in lines:
        assert per_line.get(basket_line.index, 0) <= basket_line.total_minor
    assert sum(d.total_minor for d in result.values()) <= sum(ln.total_minor for ln in lines)


@settings(max_examples=50, deadline=None)
@given(lines=lines_strategy, stack=stack_strategy)
def test_a_coupons_total_is_exactly_the_sum_of_its_line_discounts_in_whole_minor_units(
    lines, stack
):
    for discount in compute_discounts(lines, stack).values():
        assert all(isinstance(v, int) for v in discount.line_discounts.values())
        assert discount.total_minor == sum(discount.line_discounts.values())


@settings(max_examples=50, deadline=None)
@given(lines=lines_strategy, stack=stack_strategy, seed=st.integers(0, 1000))
def test_the_order_codes_are_given_in_only_breaks_ties(lines, stack, seed):
    """Application order is priority, then kind; shuffling codes of distinct (priority,
    kind) changes nothing."""
    distinct = list({(t.priority, t.kind): (k, t) for k, t in stack}.values())
    shuffled = distinct[:]
    random.Random(seed).shuffle(shuffled)
    assert compute_discounts(lines, distinct) == compute_discounts(lines, shuffled)


@settings(max_examples=50, deadline=None)
@given(lines=lines_strategy, stack=stack_strategy)
def test_each_coupon_is_applied_to_what_the_coupons_before_it_left(lines, stack):
    """Stacking = applying the coupons one by one in application order."""
    together = compute_discounts(lines, stack)
    remaining = {ln.index: ln.total_minor for ln in lines}
    for key, terms in application_order(stack):
        reduced = [
            BasketLine(ln.index, ln.sku, ln.category, ln.quantity, ln.unit_price_minor)
            for ln in lines
        ]
        alone = _apply_to_remaining(reduced, remaining, key, terms)
        assert together[key].line_discounts == alone
        for index, amount in alone.items():
            remaining[index] -= amount


def _apply_to_remaining(lines, remaining, key, terms):
    from loyalty.coupons.discounts import _line_discounts

    return {i: d for i, d in _line_discounts(terms, lines, remaining).items() if d}


@settings(max_examples=50, deadline=None)
@given(lines=lines_strategy, bp=st.integers(1, 10_000))
def test_percent_rounding_is_floor_per_line(lines, bp):
    terms = OfferTerms(kind=OfferKind.PERCENT, percent_bp=bp)
    result = compute_discounts(lines, [("P", terms)])["P"]
    for basket_line in lines:
        assert result.line_discounts.get(basket_line.index, 0) == (
            basket_line.total_minor * bp // 10_000
        )
