"""Attribute definitions: what a segment rule can test, typed, each with its SQL.

Every attribute has a name, a type (number, date, string, set, boolean), a description and
a builder that returns its SQL expression in a compile `Context` (the outer query's member
row `m`, its profile row `p` LEFT JOINed, `now`). `GET /v1/segments/attributes` lists them,
so builders offer only what exists.

Reach and engagement (marketing consent and reachability per channel, marketing messages
received, last engagement) are read at query time from notifications' tables and the
activity log, like points expiring: exact now, nothing to keep in step. Consents, phone and
email identities and push subscriptions move to the survivor of a merge, so they are the
person's own rows; messages and activities stay under the id they were written for, so they
are summed over the person's history ids. Other packages add attributes with
`register_attribute`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns.models import MemberCategoryPurchase, MemberTag
from loyalty.db import constant
from loyalty.earning.models import ActivityEvent
from loyalty.ledger.models import PointLot
from loyalty.members.models import IdentityKind, Member, MemberIdentity
from loyalty.tiers.models import Tier
from notifications.consent import MemberConsent, Purpose
from notifications.models import Message


class AttributeType(enum.StrEnum):
    NUMBER = "number"
    DATE = "date"
    STRING = "string"
    SET = "set"
    BOOLEAN = "boolean"


@dataclass
class Context:
    """What an attribute's SQL refers to: the outer query's tables and the clock."""

    now: datetime
    member: Any  # members (the outer FROM)
    profile: Any  # member_profiles, LEFT JOINed on person_id = members.id
    joins: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (subquery, on)

    def left_join(self, name: str, build: Callable[[], tuple[Any, Any]]) -> Any:
        """A grouped subquery LEFT JOINed once however many leaves use it."""
        if name not in self.joins:
            self.joins[name] = build()
        return self.joins[name][0]


Expression = Callable[[Context], Any]
# set attributes: (context, values, options) -> an EXISTS-style predicate for "any of values"
SetPredicate = Callable[[Context, Sequence[str], dict[str, Any]], Any]


@dataclass(frozen=True)
class Attribute:
    name: str
    type: AttributeType
    description: str
    expression: Expression | None = None  # scalar types
    predicate: SetPredicate | None = None  # set type
    options: tuple[str, ...] = ()  # extra keys a set condition may carry
    values: tuple[str, ...] | None = None  # the known values of an enumerated string
    relative: bool = True  # dates: within_last_days / more_than_days_ago make sense
    date_only: bool = False  # dates: a calendar date (birthday), not a timestamp

    def as_dict(self) -> dict[str, Any]:
        from campaigns.compiler import OPERATORS

        return {
            "name": self.name,
            "type": self.type.value,
            "description": self.description,
            "operators": sorted(OPERATORS[self.type] - self._refused()),
            "options": list(self.options),
            "values": list(self.values) if self.values is not None else None,
        }

    def _refused(self) -> set[str]:
        if self.type == AttributeType.DATE and not self.relative:
            return {"within_last_days", "more_than_days_ago"}
        return set()

    def allows(self, operator: str) -> bool:
        from campaigns.compiler import OPERATORS

        return operator in OPERATORS[self.type] and operator not in self._refused()


_attributes: dict[str, Attribute] = {}


def register_attribute(attribute: Attribute) -> None:
    """Add an attribute (another package's: consents, push reachability, engagement)."""
    if attribute.type == AttributeType.SET:
        assert attribute.predicate is not None, attribute.name
    else:
        assert attribute.expression is not None, attribute.name
    _attributes[attribute.name] = attribute


def get(name: str) -> Attribute | None:
    return _attributes.get(name)


def all_attributes() -> list[Attribute]:
    return [_attributes[name] for name in sorted(_attributes)]


# --- the built-in attributes ------------------------------------------------------------------

CHANNELS = ("online", "app", "store", "partner")
MESSAGE_CHANNELS = ("sms", "email", "push")


def _profile(column: str, *, zero: bool = False) -> Expression:
    def build(ctx: Context) -> Any:
        value = ctx.profile.c[column]
        return sa.func.coalesce(value, 0) if zero else value

    return build


def _member(column: str) -> Expression:
    return lambda ctx: ctx.member.c[column]


def _number(name: str, description: str, expression: Expression) -> None:
    register_attribute(Attribute(name, AttributeType.NUMBER, description, expression))


def _string(name: str, description: str, expression: Expression, values: Any = None) -> None:
    register_attribute(
        Attribute(name, AttributeType.STRING, description, expression, values=values)
    )


def _date(name: str, description: str, expression: Expression, **more: Any) -> None:
    register_attribute(Attribute(name, AttributeType.DATE, description, expression, **more))


def _expiring(days: int) -> Expression:
    """Points in available lots expiring within `days` (overdue ones included), of the
    person's whole history, read from the lots at query time: exact as time passes."""

    def build(ctx: Context) -> Any:
        def subquery() -> tuple[Any, Any]:
            lots, owners = PointLot.__table__, Member.__table__.alias("lot_owner")
            grouped = (
                sa.select(
                    sa.func.coalesce(owners.c.merged_into_id, owners.c.id).label("person_id"),
                    sa.func.sum(lots.c.remaining).label("points"),
                )
                .select_from(lots.join(owners, owners.c.id == lots.c.member_id))
                .where(
                    lots.c.status == constant("available"),
                    lots.c.expires_at <= ctx.now + timedelta(days=days),
                )
                .group_by(sa.func.coalesce(owners.c.merged_into_id, owners.c.id))
                .subquery(f"expiring_{days}d")
            )
            return grouped, grouped.c.person_id == ctx.member.c.id

        grouped = ctx.left_join(f"expiring_{days}d", subquery)
        return sa.func.coalesce(grouped.c.points, 0)

    return build


def _share(column: str) -> Expression:
    def build(ctx: Context) -> Any:
        total = ctx.profile.c.orders_lifetime
        return sa.case(
            (sa.func.coalesce(total, 0) > 0, ctx.profile.c[column] * 100 // total), else_=None
        )

    return build


def _tier(ctx: Context) -> Any:
    # A LEFT JOIN of the (few) tiers, hashed once, rather than a subquery per member row.
    def join() -> tuple[Any, Any]:
        tiers = Tier.__table__.alias("member_tier")
        return tiers, tiers.c.id == ctx.member.c.tier_id

    return ctx.left_join("tier", join).c.code


def _birthday_month(ctx: Context) -> Any:
    birthday = ctx.member.c.birthday
    if _is_postgres():
        return sa.cast(sa.extract("month", birthday), sa.Integer)
    return sa.cast(sa.func.strftime("%m", birthday), sa.Integer)


def _is_postgres() -> bool:
    from loyalty.db import is_postgres

    return is_postgres()


def _categories(ctx: Context, values: Sequence[str], options: dict[str, Any]) -> Any:
    table = MemberCategoryPurchase.__table__
    conditions = [table.c.person_id == ctx.member.c.id, table.c.category.in_(list(values))]
    if options.get("channels"):
        conditions.append(table.c.channel.in_(list(options["channels"])))
    if options.get("within_days") is not None:
        conditions.append(table.c.last_at >= ctx.now - timedelta(days=options["within_days"]))
    return sa.exists().where(*conditions)


def _tags(ctx: Context, values: Sequence[str], _options: dict[str, Any]) -> Any:
    table = MemberTag.__table__
    return sa.exists().where(table.c.person_id == ctx.member.c.id, table.c.tag.in_(list(values)))


def _history_grouped(
    name: str, table: Any, member_column: str, value: Any, *conditions: Any
) -> Expression:
    """`value` (an aggregate over `table`) per person, over every id merged into them: one
    grouped subquery LEFT JOINed once however many leaves use it (NULL: no rows)."""

    def build(ctx: Context) -> Any:
        def subquery() -> tuple[Any, Any]:
            owners = Member.__table__.alias(f"{name}_owner")
            person = sa.func.coalesce(owners.c.merged_into_id, owners.c.id)
            grouped = (
                sa.select(person.label("person_id"), value(ctx).label("value"))
                .select_from(table.join(owners, owners.c.id == table.c[member_column]))
                .where(*(condition(ctx) for condition in conditions))
                .group_by(person)
                .subquery(name)
            )
            return grouped, grouped.c.person_id == ctx.member.c.id

        return ctx.left_join(name, subquery).c.value

    return build


def _marketing_messages(days: int) -> Expression:
    """Marketing messages sent (accepted by the provider) to the person in the last `days`
    days, whatever became of them after."""
    messages = Message.__table__
    grouped = _history_grouped(
        f"marketing_messages_{days}d",
        messages,
        "member_id",
        lambda _ctx: sa.func.count(),
        lambda _ctx: messages.c.purpose == constant(Purpose.MARKETING.value),
        lambda ctx: messages.c.sent_at >= ctx.now - timedelta(days=days),
    )
    return lambda ctx: sa.func.coalesce(grouped(ctx), 0)


def _last_marketing_message(ctx: Context) -> Any:
    messages = Message.__table__
    return _history_grouped(
        "last_marketing_message",
        messages,
        "member_id",
        lambda _ctx: sa.func.max(messages.c.sent_at),
        lambda _ctx: messages.c.purpose == constant(Purpose.MARKETING.value),
        lambda _ctx: messages.c.sent_at.is_not(None),
    )(ctx)


def _last_engagement(ctx: Context) -> Any:
    """The person's latest own action: a purchase (the profile's last order) or an activity
    (check-in, review, app action: `activity_events`), whichever came last."""
    activities = ActivityEvent.__table__
    last_activity = _history_grouped(
        "last_activity",
        activities,
        "member_id",
        lambda _ctx: sa.func.max(activities.c.created_at),
    )(ctx)
    last_order = ctx.profile.c.last_order_at
    return sa.case(
        (last_order.is_(None), last_activity),
        (last_activity.is_(None), last_order),
        (last_activity > last_order, last_activity),
        else_=last_order,
    )


def _marketing_consent(channel: str) -> Expression:
    """A recorded marketing opt-in on the channel (marketing is opt-in: no row, no)."""

    def build(ctx: Context) -> Any:
        consents = MemberConsent.__table__
        return sa.exists().where(
            consents.c.member_id == ctx.member.c.id,
            consents.c.channel == channel,
            consents.c.purpose == Purpose.MARKETING.value,
            consents.c.granted.is_(True),
        )

    return build


def _reachable(channel: str) -> Expression:
    """A destination on file for the channel now: a phone (sms), an email, an unexpired
    push subscription (push); the fan-out's own test (notifications.bulk.reachable)."""

    def build(ctx: Context) -> Any:
        if channel == "push":
            from notifications.push import PushSubscription

            subscriptions = PushSubscription.__table__
            return sa.exists().where(
                subscriptions.c.member_id == ctx.member.c.id,
                sa.or_(subscriptions.c.expires_at.is_(None), subscriptions.c.expires_at > ctx.now),
            )
        identities = MemberIdentity.__table__
        kind = IdentityKind.PHONE if channel == "sms" else IdentityKind.EMAIL
        return sa.exists().where(
            identities.c.member_id == ctx.member.c.id, identities.c.kind == kind.value
        )

    return build


def _boolean(name: str, description: str, expression: Expression) -> None:
    register_attribute(Attribute(name, AttributeType.BOOLEAN, description, expression))


def _register_builtins() -> None:
    _number("points_balance", "Points balance now.", _profile("points_balance", zero=True))
    for days in (30, 60, 90):
        _number(
            f"points_expiring_{days}d",
            f"Points that expire within {days} days (from the point lots, exact now).",
            _expiring(days),
        )
    _number(
        "orders_lifetime",
        "Purchases ever (not cancelled or fully refunded).",
        _profile("orders_lifetime", zero=True),
    )
    _number(
        "spend_lifetime_minor",
        "Net spend ever, in minor units.",
        _profile("spend_lifetime_minor", zero=True),
    )
    for days in (30, 90, 365):
        _number(
            f"orders_{days}d",
            f"Purchases in the last {days} days.",
            _profile(f"orders_{days}d", zero=True),
        )
        _number(
            f"spend_{days}d_minor",
            f"Net spend in the last {days} days, minor units.",
            _profile(f"spend_{days}d_minor", zero=True),
        )
    _number(
        "online_share_pct",
        "Share of purchases online or in the app (0-100; none: null).",
        _share("online_orders"),
    )
    _number(
        "store_share_pct",
        "Share of purchases in stores (0-100; none: null).",
        _share("store_orders"),
    )
    for letter, column in (
        ("recency", "rfm_recency"),
        ("frequency", "rfm_frequency"),
        ("monetary", "rfm_monetary"),
    ):
        _number(
            f"rfm_{letter}",
            f"RFM {letter} quintile, 1-5 (5 best; no purchase: null).",
            _profile(column),
        )
    _number("birthday_month", "Month of the birthday, 1-12.", _birthday_month)
    _date("first_order_at", "First purchase.", _profile("first_order_at"))
    _date("last_order_at", "Last purchase.", _profile("last_order_at"))
    _date("enrolled_at", "Sign-up date.", _member("created_at"))
    _date("tier_since", "When the current tier was reached.", _profile("tier_since"))
    _date("birthday", "Birthday.", _member("birthday"), relative=False, date_only=True)
    _string(
        "first_order_channel",
        "Channel of the first purchase.",
        _profile("first_order_channel"),
        CHANNELS,
    )
    _string(
        "last_order_channel",
        "Channel of the last purchase.",
        _profile("last_order_channel"),
        CHANNELS,
    )
    _string("first_order_store", "Store of the first purchase.", _profile("first_order_store_id"))
    _string("last_order_store", "Store of the last purchase.", _profile("last_order_store_id"))
    _string("favourite_store", "Store of most purchases.", _profile("favourite_store_id"))
    _string("tier", "Tier code.", _tier)
    _string("enrolled_channel", "Sign-up channel.", _member("enrolled_channel"))
    _string("enrolled_store", "Sign-up store.", _member("enrolled_store_id"))
    _string("home_store", "Home store.", _member("home_store_id"))
    _string("region", "Region.", _member("region"))
    register_attribute(
        Attribute(
            "omnichannel",
            AttributeType.BOOLEAN,
            "Has bought both online (web or app) and in a store.",
            lambda ctx: sa.and_(
                sa.func.coalesce(ctx.profile.c.online_orders, 0) > 0,
                sa.func.coalesce(ctx.profile.c.store_orders, 0) > 0,
            ),
        )
    )
    for channel in MESSAGE_CHANNELS:
        _boolean(
            f"marketing_consent_{channel}",
            f"Has opted in to marketing by {channel} (a recorded opt-in, not withdrawn).",
            _marketing_consent(channel),
        )
        _boolean(
            f"{channel}_reachable",
            f"Can be reached by {channel} now ("
            + {"sms": "a phone", "email": "an email", "push": "an unexpired push subscription"}[
                channel
            ]
            + " on file).",
            _reachable(channel),
        )
    for days in (30, 90):
        _number(
            f"marketing_messages_{days}d",
            f"Marketing messages received (sent to the person) in the last {days} days.",
            _marketing_messages(days),
        )
    _date(
        "last_marketing_message_at",
        "When the person was last sent a marketing message.",
        _last_marketing_message,
    )
    _date(
        "last_engagement_at",
        "The person's latest own action: a purchase or an activity (check-in, review, app).",
        _last_engagement,
    )
    register_attribute(
        Attribute(
            "categories",
            AttributeType.SET,
            "Categories bought; options: within_days (last purchase of it within N days), "
            "channels (bought on these channels).",
            predicate=_categories,
            options=("within_days", "channels"),
        )
    )
    register_attribute(
        Attribute(
            "tags", AttributeType.SET, "Tags (the member's attributes.tags).", predicate=_tags
        )
    )


_register_builtins()
