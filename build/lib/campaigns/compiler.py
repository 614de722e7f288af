"""Segment rules: validated, then compiled to ONE SQL query (SQLAlchemy Core).

A rule is a tree:

    {"and": [rule, ...]}   {"or": [rule, ...]}   {"not": rule}
    {"field": "tier", "op": "in", "value": ["gold", "platinum"]}
    {"field": "categories", "op": "contains_any", "value": ["phones"],
     "within_days": 180, "channels": ["store"]}

`validate(rule)` returns every problem at once, each under the path of the node that has
it (`rule.and[2].value`); `compile_rule` raises them as one 422 `InvalidInput`.

Semantics (the tests' Python evaluator implements the same, independently): a leaf is true
or false, never unknown; a missing value (no purchase yet, no birthday) matches no
comparison, only `is_null`, so `not` is the exact complement. Aggregates (counts, spend,
points) are 0, never missing. The population is the active people: members neither merged,
erased nor blocked; each person's aggregates cover every id merged into them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns import attributes as catalogue
from campaigns.attributes import Attribute, AttributeType, Context
from campaigns.models import MemberProfile
from loyalty.db import constant
from loyalty.errors import InvalidInput, field_error
from loyalty.members.models import Member, MemberStatus

OPERATORS: dict[AttributeType, frozenset[str]] = {
    AttributeType.NUMBER: frozenset(
        {"eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in", "is_null", "is_not_null"}
    ),
    AttributeType.STRING: frozenset({"eq", "ne", "in", "not_in", "is_null", "is_not_null"}),
    AttributeType.DATE: frozenset(
        {"before", "after", "within_last_days", "more_than_days_ago", "is_null", "is_not_null"}
    ),
    AttributeType.BOOLEAN: frozenset({"is"}),
    AttributeType.SET: frozenset({"contains_any", "contains_all", "contains_none"}),
}
MAX_DEPTH = 12
MAX_NODES = 200
MAX_LIST = 1000
MAX_DAYS = 36_500
MAX_NUMBER = 2**62
NO_VALUE = frozenset({"is_null", "is_not_null"})

Errors = dict[str, list[str]]


# --- validation ------------------------------------------------------------------------------


def validate(rule: Any, path: str = "rule") -> Errors:
    """Every problem of the rule, by path; empty when it is valid."""
    errors: Errors = {}
    counter = [0]
    _check(rule, path, errors, depth=0, counter=counter)
    if counter[0] > MAX_NODES:
        errors.setdefault(path, []).append(f"a rule has at most {MAX_NODES} conditions")
    return errors


def _add(errors: Errors, path: str, message: str) -> None:
    errors.setdefault(path, []).append(message)


def _check(node: Any, path: str, errors: Errors, *, depth: int, counter: list[int]) -> None:
    counter[0] += 1
    if depth > MAX_DEPTH:
        _add(errors, path, f"rules nest at most {MAX_DEPTH} levels")
        return
    if not isinstance(node, dict):
        _add(errors, path, "a rule is an object: and, or, not, or a condition with field/op")
        return
    groups = [key for key in ("and", "or", "not") if key in node]
    if groups:
        if len(node) != 1:
            _add(errors, path, f"{groups[0]!r} stands alone in its object")
            return
        key = groups[0]
        if key == "not":
            _check(node["not"], f"{path}.not", errors, depth=depth + 1, counter=counter)
            return
        children = node[key]
        if not isinstance(children, list) or not children:
            _add(errors, f"{path}.{key}", f"{key!r} takes a non-empty list of rules")
            return
        for index, child in enumerate(children):
            _check(child, f"{path}.{key}[{index}]", errors, depth=depth + 1, counter=counter)
        return
    _check_leaf(node, path, errors)


def _check_leaf(node: dict[str, Any], path: str, errors: Errors) -> None:
    name = node.get("field")
    if not isinstance(name, str):
        _add(errors, f"{path}.field", "a condition names its attribute in 'field'")
        return
    attribute = catalogue.get(name)
    if attribute is None:
        _add(errors, f"{path}.field", f"unknown attribute {name!r} (GET /v1/segments/attributes)")
        return
    operator = node.get("op")
    if not isinstance(operator, str) or not attribute.allows(operator):
        allowed = ", ".join(attribute.as_dict()["operators"])
        _add(errors, f"{path}.op", f"{attribute.type} attribute {name!r} takes: {allowed}")
        return
    allowed_keys = {"field", "op", "value", *attribute.options}
    for key in sorted(set(node) - allowed_keys):
        _add(errors, f"{path}.{key}", f"unknown key for a condition on {name!r}")
    if operator in NO_VALUE:
        if node.get("value") is not None:
            _add(errors, f"{path}.value", f"{operator!r} takes no value")
        return
    if "value" not in node:
        _add(errors, f"{path}.value", "missing value")
        return
    message = _value_problem(attribute, operator, node["value"])
    if message:
        _add(errors, f"{path}.value", message)
    if attribute.type == AttributeType.SET:
        _check_set_options(node, path, errors)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and abs(value) <= MAX_NUMBER
        and value == value  # not NaN
    )


def _is_days(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_DAYS


def _string_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and 1 <= len(value) <= MAX_LIST
        and all(isinstance(item, str) and 0 < len(item) <= 200 for item in value)
    )


def _value_problem(attribute: Attribute, operator: str, value: Any) -> str | None:
    kind = attribute.type
    if kind == AttributeType.NUMBER:
        if operator == "between":
            ok = isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))
            if not ok:
                return "'between' takes [low, high], two numbers"
            return None if value[0] <= value[1] else "'between' needs low <= high"
        if operator in ("in", "not_in"):
            ok = isinstance(value, list) and 1 <= len(value) <= MAX_LIST
            return None if ok and all(map(_is_number, value)) else "a list of numbers"
        return None if _is_number(value) else "a number"
    if kind == AttributeType.STRING:
        if operator in ("in", "not_in"):
            problem = None if _string_list(value) else "a non-empty list of strings"
            items = value if problem is None else []
        else:
            ok = isinstance(value, str) and 0 < len(value) <= 200
            problem = None if ok else "a non-empty string"
            items = [value] if problem is None else []
        unknown = [item for item in items if attribute.values and item not in attribute.values]
        if unknown:
            return f"unknown value(s) {unknown}; known: {list(attribute.values or ())}"
        return problem
    if kind == AttributeType.DATE:
        if operator in ("within_last_days", "more_than_days_ago"):
            return None if _is_days(value) else f"a whole number of days, 0-{MAX_DAYS}"
        return None if _parse_when(value, attribute) is not None else "an ISO 8601 date or time"
    if kind == AttributeType.BOOLEAN:
        return None if isinstance(value, bool) else "true or false"
    return None if _string_list(value) else "a non-empty list of strings"


def _check_set_options(node: dict[str, Any], path: str, errors: Errors) -> None:
    if "within_days" in node and not (_is_days(node["within_days"]) and node["within_days"] > 0):
        _add(errors, f"{path}.within_days", f"a whole number of days, 1-{MAX_DAYS}")
    if "channels" in node:
        channels = node["channels"]
        if not _string_list(channels) or set(channels) - set(catalogue.CHANNELS):
            _add(errors, f"{path}.channels", f"a list of channels from {list(catalogue.CHANNELS)}")


def _parse_when(value: Any, attribute: Attribute) -> datetime | date | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        if attribute.date_only:
            return date.fromisoformat(value[:10]) if len(value) == 10 else None
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- compilation -----------------------------------------------------------------------------


def check(rule: Any) -> None:
    """Raise a 422 naming every problem's path, or return."""
    errors = validate(rule)
    if errors:
        listed = [
            field_error(path, message) for path, messages in errors.items() for message in messages
        ]
        raise InvalidInput("the segment rule is not valid; see `errors`", errors=listed)


def new_context(now: datetime) -> Context:
    return Context(now=now, member=Member.__table__, profile=MemberProfile.__table__)


def predicate(rule: dict[str, Any], ctx: Context) -> Any:
    """The rule as a SQL boolean (validated first by the caller)."""
    if "and" in rule:
        return sa.and_(*(predicate(child, ctx) for child in rule["and"]))
    if "or" in rule:
        return sa.or_(*(predicate(child, ctx) for child in rule["or"]))
    if "not" in rule:
        return sa.not_(predicate(rule["not"], ctx))
    return _leaf(rule, ctx)


def people_query(rule: dict[str, Any] | None, now: datetime) -> sa.Select[Any]:
    """SELECT the ids of the active people matching `rule` (None: everyone): one query,
    the profile LEFT JOINed (a person without a profile row yet has zero aggregates)."""
    ctx = new_context(now)
    condition = predicate(rule, ctx) if rule is not None else sa.true()
    source = ctx.member.outerjoin(ctx.profile, ctx.profile.c.person_id == ctx.member.c.id)
    for subquery, on in ctx.joins.values():
        source = source.outerjoin(subquery, on)
    return (
        sa.select(ctx.member.c.id.label("member_id"))
        .select_from(source)
        .where(ctx.member.c.status == constant(MemberStatus.ACTIVE.value), condition)
    )


def compile_rule(rule: Any, now: datetime) -> sa.Select[Any]:
    check(rule)
    return people_query(rule, now)


def _leaf(node: dict[str, Any], ctx: Context) -> Any:
    attribute = catalogue.get(node["field"])
    assert attribute is not None
    operator, value = node["op"], node.get("value")
    if attribute.type == AttributeType.SET:
        assert attribute.predicate is not None
        options = {key: node[key] for key in attribute.options if key in node}
        if operator == "contains_any":
            return attribute.predicate(ctx, value, options)
        if operator == "contains_all":
            return sa.and_(*(attribute.predicate(ctx, [item], options) for item in value))
        return sa.not_(attribute.predicate(ctx, value, options))
    assert attribute.expression is not None
    column = attribute.expression(ctx)
    if attribute.type == AttributeType.BOOLEAN:
        return column if value else sa.not_(column)
    if operator == "is_null":
        return column.is_(None)
    if operator == "is_not_null":
        return column.is_not(None)
    return sa.and_(column.is_not(None), _compare(attribute, operator, value, column, ctx.now))


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda c, v: c == v,
    "ne": lambda c, v: c != v,
    "gt": lambda c, v: c > v,
    "gte": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "lte": lambda c, v: c <= v,
    "in": lambda c, v: c.in_(v),
    "not_in": lambda c, v: c.not_in(v),
    "between": lambda c, v: c.between(v[0], v[1]),
    "before": lambda c, v: c < v,
    "after": lambda c, v: c > v,
}


def _compare(attribute: Attribute, operator: str, value: Any, column: Any, now: datetime) -> Any:
    if operator == "within_last_days":
        return column >= now - timedelta(days=value)
    if operator == "more_than_days_ago":
        return column < now - timedelta(days=value)
    if attribute.type == AttributeType.DATE:
        value = _parse_when(value, attribute)
    return _COMPARE[operator](column, value)
