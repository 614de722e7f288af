"""The segment compiler against a brute-force Python evaluator (hypothesis), on the same
generated member base: the one SQL query selects exactly the people the rule's stated
semantics select. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.compiler import compile_rule, validate
from loyalty.clock import utcnow
from loyalty.db import db
from tests.campaigns import dataset

NUMBERS = {
    "points_balance": [0, 300, 800, 1500],
    "points_expiring_30d": [0, 100, 500],
    "points_expiring_60d": [0, 300, 800],
    "points_expiring_90d": [0, 500],
    "orders_lifetime": [0, 1, 3],
    "spend_lifetime_minor": [0, 2500, 10000],
    "orders_30d": [0, 1],
    "spend_90d_minor": [0, 1000, 5000],
    "orders_365d": [0, 1, 2],
    "spend_365d_minor": [0, 3000],
    "online_share_pct": [0, 50, 100],
    "store_share_pct": [0, 34, 100],
    "rfm_recency": [1, 3, 5],
    "rfm_frequency": [2, 4],
    "rfm_monetary": [1, 5],
    "birthday_month": [1, 6, 12],
    "marketing_messages_30d": [0, 1, 2],
    "marketing_messages_90d": [0, 1, 3],
}
STRINGS = {
    "tier": dataset.TIERS,
    "region": dataset.REGIONS,
    "first_order_channel": dataset.CHANNELS,
    "last_order_channel": dataset.CHANNELS,
    "favourite_store": dataset.STORES,
    "last_order_store": dataset.STORES,
    "enrolled_channel": dataset.CHANNELS,
}
DATES = [
    "first_order_at",
    "last_order_at",
    "enrolled_at",
    "last_marketing_message_at",
    "last_engagement_at",
]
BOOLEANS = [
    "omnichannel",
    *(f"marketing_consent_{c}" for c in ("sms", "email", "push")),
    *(f"{c}_reachable" for c in ("sms", "email", "push")),
]


def _number_leaf(name: str) -> st.SearchStrategy:
    values = st.sampled_from(NUMBERS[name])
    return st.one_of(
        st.builds(
            lambda op, v: {"field": name, "op": op, "value": v},
            st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
            values,
        ),
        st.builds(
            lambda a, b: {"field": name, "op": "between", "value": sorted([a, b])}, values, values
        ),
        st.builds(
            lambda op, vs: {"field": name, "op": op, "value": vs},
            st.sampled_from(["in", "not_in"]),
            st.lists(values, min_size=1, max_size=3),
        ),
        st.sampled_from([{"field": name, "op": "is_null"}, {"field": name, "op": "is_not_null"}]),
    )


def _string_leaf(name: str) -> st.SearchStrategy:
    values = st.sampled_from(STRINGS[name])
    return st.one_of(
        st.builds(
            lambda op, v: {"field": name, "op": op, "value": v},
            st.sampled_from(["eq", "ne"]),
            values,
        ),
        st.builds(
            lambda op, vs: {"field": name, "op": op, "value": vs},
            st.sampled_from(["in", "not_in"]),
            st.lists(values, min_size=1, max_size=3),
        ),
        st.sampled_from([{"field": name, "op": "is_null"}, {"field": name, "op": "is_not_null"}]),
    )


def _date_leaf(name: str) -> st.SearchStrategy:
    days = st.sampled_from([1, 30, 90, 180, 400])
    return st.one_of(
        st.builds(
            lambda op, d: {"field": name, "op": op, "value": d},
            st.sampled_from(["within_last_days", "more_than_days_ago"]),
            days,
        ),
        st.builds(
            lambda op, d: {
                "field": name,
                "op": op,
                "value": (utcnow() - timedelta(days=d)).date().isoformat(),
            },
            st.sampled_from(["before", "after"]),
            days,
        ),
        st.sampled_from([{"field": name, "op": "is_null"}, {"field": name, "op": "is_not_null"}]),
    )


def _set_leaf() -> st.SearchStrategy:
    categories = st.builds(
        lambda op, vs, within, channels: {
            "field": "categories",
            "op": op,
            "value": vs,
            **({"within_days": within} if within else {}),
            **({"channels": channels} if channels else {}),
        },
        st.sampled_from(["contains_any", "contains_all", "contains_none"]),
        st.lists(st.sampled_from(dataset.CATEGORIES), min_size=1, max_size=2, unique=True),
        st.sampled_from([None, 30, 180, 365]),
        st.one_of(st.none(), st.lists(st.sampled_from(dataset.CHANNELS), min_size=1, max_size=2)),
    )
    tags = st.builds(
        lambda op, vs: {"field": "tags", "op": op, "value": vs},
        st.sampled_from(["contains_any", "contains_all", "contains_none"]),
        st.lists(st.sampled_from(dataset.TAGS), min_size=1, max_size=2, unique=True),
    )
    return st.one_of(categories, tags)


LEAVES = st.one_of(
    *(_number_leaf(name) for name in NUMBERS),
    *(_string_leaf(name) for name in STRINGS),
    *(_date_leaf(name) for name in DATES),
    _date_leaf("birthday").filter(
        lambda leaf: leaf["op"] not in ("within_last_days", "more_than_days_ago")
    ),
    _set_leaf(),
    *(
        st.builds(lambda v, name=name: {"field": name, "op": "is", "value": v}, st.booleans())
        for name in BOOLEANS
    ),
)
RULES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.builds(lambda xs: {"and": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, children),
    ),
    max_leaves=6,
)


@pytest.fixture
def people(app):
    now = utcnow()
    base = dataset.build(7, members=40, now=now)
    attrs = {pid: dataset.values(person, now) for pid, person in base.items()}
    return now, base, attrs


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rule=RULES)
def test_the_compiled_query_selects_exactly_whom_the_rule_describes(people, rule):
    now, base, attrs = people
    assert validate(rule) == {}
    selected = set(db.session.scalars(compile_rule(rule, now)))
    expected = {
        pid for pid, person in base.items() if dataset.evaluate(rule, person, attrs[pid], now)
    }
    db.session.rollback()
    assert selected == expected, rule


def test_the_generated_base_covers_the_interesting_cases(people):
    """Guard against a vacuous property: the base has merges, buyers, expiring points."""
    now, base, attrs = people
    assert any(len(person.ids) > 1 for person in base.values())
    assert sum(1 for a in attrs.values() if a["orders_lifetime"]) >= 10
    assert any(a["points_expiring_30d"] for a in attrs.values())
    assert any(a["rfm_recency"] == 5 for a in attrs.values())
    assert any(person.lines for person in base.values())
    for name in BOOLEANS:  # every reach attribute is true for some and false for others
        assert {a[name] for a in attrs.values()} == {True, False}, name
    assert any(a["marketing_messages_30d"] for a in attrs.values())
    engaged = [a for a in attrs.values() if a["last_engagement_at"] is not None]
    assert any(a["last_order_at"] is None for a in engaged)  # engaged by activity only
    assert any(len(p.ids) > 1 and p.marketing_sent for p in base.values())  # merged history
    # One query: the compiled rule is a single SELECT statement.
    statement = compile_rule({"field": "points_expiring_30d", "op": "gte", "value": 500}, now)
    assert isinstance(statement, sa.Select)
