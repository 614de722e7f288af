"""Earning operations: post orders, refund and cancel them, record activities, manage rules.

Plain functions with explicit arguments (the client, the clock, the actor); they flush and
never commit. Points move only through loyalty.ledger.operations.
"""

from __future__ import annotations

import calendar
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from loyalty import outbox
from loyalty.auth import tokens
from loyalty.basket import Basket, BasketLine, OrderDiscounts
from loyalty.cache import TTLCache
from loyalty.db import (
    column_values,
    db,
    insert_unless_present,
    is_postgres,
    json_rows,
    plain_insert,
    upsert_insert,
)
from loyalty.earning import engine
from loyalty.earning.models import (
    ActivityEvent,
    ActivityKind,
    EarningRule,
    Order,
    OrderLine,
    OrderStatus,
    Refund,
    RuleKind,
)
from loyalty.errors import (
    Conflict,
    InvalidInput,
    MemberNotActive,
    NotAuthenticated,
    NotFound,
    OmniloyalError,
)
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import HoldStatus, PointHold
from loyalty.members.identities import phone_region
from loyalty.members.models import Member
from loyalty.members.operations import MemberNotFound, find_member_by_external_id, find_or_enrol
from loyalty.members.resolution import (
    current_member_id,
    get_member,
    history_member_ids,
    lock_current_member,
)
from loyalty.stores.models import Channel
from loyalty.stores.operations import StoreSnapshot, cached_store
from loyalty.tiers import operations as tiers
from loyalty.timezones import local

CLOCK_SKEW = timedelta(minutes=5)  # a till's clock may run a little ahead of ours


class OrderIdReused(Conflict):
    """This order id was already posted by this client with different content."""

    slug, title = "order-id-reused", "Order id already used for another order"


class RefundIdReused(Conflict):
    """This refund id was already used on this order with a different body."""

    slug, title = "refund-id-reused", "Refund id already used for another refund"


class RefundExceedsOrder(InvalidInput):
    """The refunds of an order would add up to more than what was paid for it."""

    slug, title = "refund-exceeds-order", "Refund exceeds the order total"


class OrderCancelled(Conflict):
    """The order was cancelled; it can't be refunded any more."""

    slug, title = "order-cancelled", "Order cancelled"


class CouponsUnavailable(InvalidInput):
    """Coupon redemption isn't installed in this deployment."""

    slug, title = "coupons-unavailable", "Coupons are not available"


def _settings() -> Any:
    return current_app.extensions["omniloyal.settings"]


def order_cause_ref(order_id: int) -> str:
    """The ledger cause ref (and lot cause ref) of an order's points: refunds find them by it."""
    return f"order:{order_id}"


def _fingerprint(content: Mapping[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def order_fingerprint(data: Mapping[str, Any]) -> str:
    """What was bought, when and where: the member reference is left out on purpose, since
    a retry may identify the same member another way (a fresh QR token, the phone)."""
    occurred_at = data.get("occurred_at")
    # Metadata counts only when given, so orders posted before it existed still replay.
    extra = {"metadata": data["metadata"]} if data.get("metadata") is not None else {}
    return _fingerprint(
        {
            **extra,
            "channel": data["channel"],
            "store_id": data.get("store_id"),
            "currency": data["currency"],
            "occurred_at": occurred_at.astimezone(UTC).isoformat() if occurred_at else None,
            "lines": [
                {
                    "sku": line["sku"],
                    "category": line.get("category"),
                    "quantity": line["quantity"],
                    "unit_price_minor": line["unit_price_minor"],
                }
                for line in data["lines"]
            ],
            "coupon_codes": list(data.get("coupon_codes") or []),
        }
    )


# --- rules ----------------------------------------------------------------------------------

RULE_FIELDS = (
    "name",
    "kind",
    "active",
    "currency",
    "channels",
    "store_ids",
    "regions",
    "categories",
    "skus",
    "points",
    "per_minor",
    "multiplier_pct",
    "bonus_points",
    "min_spend_minor",
    "max_points",
    "activity_kind",
    "starts_at",
    "ends_at",
)

_RULE_DEFAULTS: dict[str, Any] = {
    "active": True,
    "points": 0,
    "per_minor": 1,
    "multiplier_pct": 100,
    "bonus_points": 0,
}


def _tuple(values: Sequence[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values is not None else None


def rule_spec(rule: EarningRule) -> engine.RuleSpec:
    return engine.RuleSpec(
        id=rule.id,
        name=rule.name,
        kind=rule.kind,
        currency=rule.currency,
        channels=_tuple(rule.channels),
        store_ids=_tuple(rule.store_ids),
        regions=_tuple(rule.regions),
        categories=_tuple(rule.categories),
        skus=_tuple(rule.skus),
        points=rule.points,
        per_minor=rule.per_minor,
        multiplier_pct=rule.multiplier_pct,
        bonus_points=rule.bonus_points,
        min_spend_minor=rule.min_spend_minor,
        max_points=rule.max_points,
        activity_kind=rule.activity_kind,
        starts_at=rule.starts_at,
        ends_at=rule.ends_at,
        active=rule.active,
    )


def validate_rule(values: Mapping[str, Any]) -> None:
    """Cross-field checks for a rule; raises InvalidInput naming the field."""
    kind = values["kind"]
    currency = values.get("currency")
    if currency is not None and currency not in _settings().currencies:
        raise InvalidInput(f"{currency!r} is not a configured currency", field="currency")
    if kind == RuleKind.BASE_RATE and (not currency or values.get("points", 0) <= 0):
        raise InvalidInput("a base rate needs a currency and points per `per_minor`", field="kind")
    if values.get("min_spend_minor") is not None and not currency:
        raise InvalidInput("a minimum spend needs a currency", field="min_spend_minor")
    if kind == RuleKind.MULTIPLIER and values.get("multiplier_pct", 100) <= 100:
        raise InvalidInput("a multiplier needs multiplier_pct above 100", field="multiplier_pct")
    if kind == RuleKind.BONUS and values.get("bonus_points", 0) <= 0:
        raise InvalidInput("a bonus needs bonus_points", field="bonus_points")
    if kind == RuleKind.PROMOTION:
        if values.get("starts_at") is None or values.get("ends_at") is None:
            raise InvalidInput("a promotion needs starts_at and ends_at", field="starts_at")
        if values.get("multiplier_pct", 100) <= 100 and values.get("bonus_points", 0) <= 0:
            raise InvalidInput("a promotion needs a multiplier or bonus_points", field="kind")
    if kind == RuleKind.ORDER_CAP and values.get("max_points") is None:
        raise InvalidInput("an order cap needs max_points", field="max_points")
    if kind == RuleKind.EVENT_BONUS:
        if values.get("activity_kind") not in {k.value for k in ActivityKind}:
            raise InvalidInput("an event bonus needs an activity_kind", field="activity_kind")
        if values.get("bonus_points", 0) <= 0:
            raise InvalidInput("an event bonus needs bonus_points", field="bonus_points")
        if currency is not None:
            raise InvalidInput("an event bonus has no currency", field="currency")
    elif values.get("activity_kind") is not None:
        raise InvalidInput("activity_kind is only for event bonuses", field="activity_kind")
    starts_at, ends_at = values.get("starts_at"), values.get("ends_at")
    if starts_at is not None and ends_at is not None and starts_at >= ends_at:
        raise InvalidInput("ends_at must be after starts_at", field="ends_at")


def create_rule(data: Mapping[str, Any], *, now: datetime) -> EarningRule:
    """Add an earning rule (validated); it applies to orders from now on."""
    values = {**_RULE_DEFAULTS, **{k: v for k, v in data.items() if v is not None}}
    validate_rule(values)
    rule = EarningRule(**values, created_at=now, updated_at=now)
    db.session.add(rule)
    db.session.flush()
    return rule


def get_rule(rule_id: int) -> EarningRule:
    rule = db.session.get(EarningRule, rule_id)
    if rule is None:
        raise NotFound(f"no earning rule {rule_id}")
    return rule


def update_rule(rule_id: int, changes: Mapping[str, Any], *, now: datetime) -> EarningRule:
    rule = get_rule(rule_id)
    values = {name: getattr(rule, name) for name in RULE_FIELDS} | dict(changes)
    validate_rule(values)
    for name, value in changes.items():
        setattr(rule, name, value)
    rule.updated_at = now
    db.session.flush()
    return rule


def delete_rule(rule_id: int) -> None:
    """Remove a rule. Past orders keep their breakdown (it names the rule)."""
    db.session.delete(get_rule(rule_id))
    db.session.flush()


def list_rules(*, kind: str | None = None, active: bool | None = None) -> list[EarningRule]:
    query = sa.select(EarningRule).order_by(EarningRule.id)
    if kind is not None:
        query = query.where(EarningRule.kind == kind)
    if active is not None:
        query = query.where(EarningRule.active.is_(active))
    return list(db.session.scalars(query))


def _rules_at(moment: datetime, *, event: bool) -> list[engine.RuleSpec]:
    """The active rules in force at `moment` (the engine filters the rest).

    Read on every order and activity: the active rules are cached per process (see
    loyalty.cache; a rule written in this process clears the cache at once, other processes
    see the change within the TTL); the time window is checked here, per call.
    """
    rules = _active_rules_cache.get(event, lambda: _load_active_rules(event))
    return [rule for rule in rules if rule.in_window(moment)]


# Rules for one member only (a campaign's earn multiplier for its recipients), from sources
# other domains register; asked on every order with the person and the order's time.
MemberRuleSource = Callable[[int, datetime], Sequence[engine.RuleSpec]]
_member_rule_sources: list[MemberRuleSource] = []


def register_member_rules(source: MemberRuleSource) -> MemberRuleSource:
    if source not in _member_rule_sources:
        _member_rule_sources.append(source)
    return source


def member_rules(member_id: int, moment: datetime) -> list[engine.RuleSpec]:
    return [rule for source in _member_rule_sources for rule in source(member_id, moment)]


_active_rules_cache: TTLCache[tuple[engine.RuleSpec, ...]] = TTLCache(
    "active earning rules", models=(EarningRule,)
)


def _load_active_rules(event: bool) -> tuple[engine.RuleSpec, ...]:
    kind_filter = (
        EarningRule.kind == RuleKind.EVENT_BONUS.value
        if event
        else EarningRule.kind != RuleKind.EVENT_BONUS.value
    )
    rows = db.session.scalars(
        sa.select(EarningRule)
        .where(EarningRule.active.is_(True), kind_filter)
        .order_by(EarningRule.id)
    )
    return tuple(rule_spec(rule) for rule in rows)


# --- members --------------------------------------------------------------------------------

_IDENTITY_FIELDS = ("phone", "email", "card", "app_user")


def resolve_order_member(
    spec: Mapping[str, Any],
    *,
    channel: str,
    store_id: str | None,
    now: datetime,
    lock: bool = False,
) -> tuple[Member, bool, bool]:
    """The member an order names, enrolling them when given by an identity nobody has yet.

    Returns (member, enrolled, locked). Merged ids resolve to the survivor. With `lock`, a
    member named by id or token is read with the ledger's row lock (FOR NO KEY UPDATE), so
    earning needn't read it again; `locked` says the returned member's row is locked by
    this transaction (or was inserted by it).
    """
    if spec.get("member_id") is not None:
        member, locked = _existing_member(spec["member_id"], lock=lock)
        return member, False, locked
    readers: tuple[tuple[str, Callable[[str], int]], ...] = (
        ("qr_token", lambda token: tokens.use_member_qr(token, now=now)),  # one use per QR
        ("member_token", tokens.member_id_from_token),
    )
    for field, reader in readers:
        if spec.get(field):
            try:
                member_id = reader(spec[field])
            except NotAuthenticated as error:
                raise InvalidInput(error.detail, field=f"member.{field}") from None
            member, locked = _existing_member(member_id, lock=lock)
            return member, False, locked
    identities = {name: spec[name] for name in _IDENTITY_FIELDS if spec.get(name)}
    external_id = spec.get("external_id")
    if not identities and not external_id:
        raise InvalidInput("name the member by id, identity or token", field="member")
    enrol = spec.get("enrol", True)
    if not identities:  # only the external id: find the member, or refuse
        member = find_member_by_external_id(external_id)
        if member is None:
            raise MemberNotFound(
                f"no member has external id {external_id!r}; give an identity to enrol one"
            )
        member, locked = _existing_member(member.id, lock=lock)
        return member, False, locked
    member, enrolled = find_or_enrol(
        identities=identities,
        now=now,
        channel=channel,
        store_id=store_id,
        # The same phone rule as identify: the store's country, else the program's region.
        default_region=phone_region(store_id=store_id),
        external_id=external_id,
        enrol=enrol,
    )
    return member, enrolled, enrolled  # a row this transaction inserted is its own


def _existing_member(member_id: int, *, lock: bool = False) -> tuple[Member, bool]:
    """(member, locked): the member the id belongs to now (merges followed, under the row
    lock when `lock` is asked: the ledger's lock helper, see lock_member_accounts)."""
    try:
        if lock:
            return lock_current_member(member_id), True
        return get_member(member_id), False
    except NotFound:
        raise InvalidInput(f"no member {member_id}", field="member") from None


def _require_active(member: Member) -> None:
    if not member.is_active:
        raise MemberNotActive(f"member {member.id} is {member.status}")


def _tier_multiplier(member: Member, tier_list: Sequence[Any]) -> tuple[int, str | None]:
    tier = next((t for t in tier_list if t.id == member.tier_id), None)
    return (tier.earn_multiplier_pct, tier.code) if tier is not None else (100, None)


# --- orders ---------------------------------------------------------------------------------


def find_order(external_id: str, *, client_id: int | None, store_id: str | None = None) -> Order:
    """The caller's order by external id: posted by this client, or (store-bound keys) by
    any client for the caller's store. Anything else is a 404."""
    order = db.session.scalar(
        sa.select(Order).where(Order.client_id == client_id, Order.external_id == external_id)
    )
    if order is None and store_id is not None:
        order = db.session.scalar(
            sa.select(Order)
            .where(Order.store_id == store_id, Order.external_id == external_id)
            .order_by(Order.id)
            .limit(1)
        )
    if order is None:
        raise NotFound(f"no order {external_id!r}")
    return order


def _check_store(store_id: str | None, channel: Channel) -> StoreSnapshot | None:
    if store_id is None:
        if channel.needs_store:
            raise InvalidInput(f"a {channel.value} order needs a store_id", field="store_id")
        return None
    store = cached_store(store_id)
    if store is None or not store.active:
        raise InvalidInput(f"unknown store {store_id!r}", field="store_id")
    return store


def _basket(data: Mapping[str, Any], channel: str, store_id: str | None) -> Basket:
    return Basket(
        currency=data["currency"],
        channel=channel,
        store_id=store_id,
        lines=tuple(
            BasketLine(
                index=index,
                sku=line["sku"],
                category=line.get("category"),
                quantity=line["quantity"],
                unit_price_minor=line["unit_price_minor"],
            )
            for index, line in enumerate(data["lines"])
        ),
    )


def _may_act_before_insert(member_spec: Mapping[str, Any]) -> bool:
    """Whether resolving this member could enrol someone, use a one-time QR or refuse an
    expired token: then a repeat of the order must be found before the member is."""
    return any(member_spec.get(name) for name in (*_IDENTITY_FIELDS, "qr_token", "member_token"))


def _earlier(client_id: int, external_id: str, fingerprint: str) -> Order | None:
    """The client's order under this id (OrderIdReused when it had other content)."""
    earlier_id = db.session.execute(
        _order_id_query(), {"client_id": client_id, "external_id": external_id}
    ).scalar()
    if earlier_id is None:
        return None
    earlier = db.session.get(Order, earlier_id)
    assert earlier is not None
    return _replay(earlier, fingerprint)[0]


def earlier_order(data: Mapping[str, Any], *, client_id: int) -> Order | None:
    """The client's order already posted under `data["order_id"]`, when this is a repeat of
    it (OrderIdReused when the id was used for other content); None for a new order. Looked
    up before anything that could refuse a repeat (the coupon guess lockout, Redis being
    away), so a retry of an accepted order always replays. `data` as `post_order` gets it."""
    return _earlier(client_id, data["order_id"], order_fingerprint(data))


def _replay(order: Order, fingerprint: str) -> tuple[Order, bool]:
    if order.fingerprint != fingerprint:
        raise OrderIdReused(f"order {order.external_id!r} was already posted with other content")
    return order, False


def post_order(
    data: Mapping[str, Any], *, client_id: int, now: datetime, actor: str
) -> tuple[Order, bool]:
    """Record an order and earn its points. Returns (order, created).

    Idempotent by (client, order id): the same order again returns the first one with no
    second effect, even when both arrive at once (the unique key decides, the loser reads
    the winner's row); other content under the same id is an OrderIdReused (409).
    `data["store_id"]` must already be checked against the caller's store binding.
    """
    settings = _settings()
    currency = data["currency"]
    if currency not in settings.currencies:
        raise InvalidInput(f"{currency!r} is not a configured currency", field="currency")
    channel = Channel(data["channel"])
    store = _check_store(data.get("store_id"), channel)
    occurred_at = (data.get("occurred_at") or now).astimezone(UTC)
    if occurred_at > now + CLOCK_SKEW:
        raise InvalidInput("occurred_at is in the future", field="occurred_at")
    fingerprint = order_fingerprint(data)
    external_id = data["order_id"]
    # A repeat replays before anything that could refuse it or act a second time. Naming
    # the member by an identity (which may enrol them) or a token (one use per QR, a TTL)
    # is looked up first; a member named by id or external id can't be affected, so that
    # order (the tills' usual one) skips the lookup: the order row's unique key finds a
    # repeat, and a refusal on the way there still looks for one before it is raised.
    replay_checked = _may_act_before_insert(data["member"])
    if replay_checked and (earlier := _earlier(client_id, external_id, fingerprint)):
        return earlier, False
    store_id = store.id if store is not None else None
    try:
        # After the replay: a retry of an order accepted yesterday still replays.
        _check_not_too_old(occurred_at, now, settings.max_order_age_days)
        # The member row is the first lock (docs/architecture.md, "Lock order"): before the
        # coupon rows, which a merge or a refund takes after the member. The ledger then
        # needn't read it again.
        member, enrolled, member_locked = resolve_order_member(
            data["member"], channel=channel.value, store_id=store_id, now=now, lock=True
        )
        if not member_locked:
            member = lock_current_member(member.id)
        _require_active(member)
    except OmniloyalError:
        if not replay_checked and (earlier := _earlier(client_id, external_id, fingerprint)):
            return earlier, False
        raise
    basket = _basket(data, channel.value, store_id)
    subtotal = basket.total_minor
    values = {
        "client_id": client_id,
        "external_id": external_id,
        "channel": channel.value,
        "store_id": store_id,
        "member_id": member.id,
        "member_enrolled": enrolled,
        "currency": currency,
        "subtotal_minor": subtotal,
        "discount_minor": 0,
        "total_minor": subtotal,
        "refunded_minor": 0,
        "occurred_at": occurred_at,
        "status": OrderStatus.POSTED.value,
        "points_earned": 0,
        "points_reversed": 0,
        "fingerprint": fingerprint,
        "breakdown": [],
        "coupons": [],
        "extra": data.get("metadata"),
        "created_at": now,
        "updated_at": now,
    }
    order_id = db.session.execute(
        insert_unless_present(Order.__table__, ("client_id", "external_id")),
        column_values(Order, values),  # `extra` is the `metadata` column
    ).scalar()
    if order_id is None:  # an earlier post of this id (committed, or just now): replay it
        winner = _earlier(client_id, external_id, fingerprint)
        assert winner is not None
        return winner, False
    # The row as inserted, made a persistent ORM object without reading it back.
    order = Order(
        id=order_id, **values, pending_until=None, ledger_transaction_id=None, cancellation=None
    )
    make_transient_to_detached(order)
    db.session.add(order)

    discounts = OrderDiscounts()
    if data.get("coupon_codes"):
        discounts = _redeem_coupons(order, basket, data["coupon_codes"], member, now, actor)
    line_discounts = _allocate_discounts(basket, discounts)
    discount = sum(line_discounts.values())
    if data.get("total_minor") is not None and data["total_minor"] != subtotal - discount:
        raise InvalidInput(
            f"the order total is {subtotal - discount} ({subtotal} less {discount} discount)",
            field="total_minor",
        )
    lines = [
        {
            "order_id": order.id,
            "index": line.index,
            "sku": line.sku,
            "category": line.category,
            "quantity": line.quantity,
            "unit_price_minor": line.unit_price_minor,
            "discount_minor": line_discounts.get(line.index, 0),
            "refunded_quantity": 0,
            "refunded_minor": 0,
        }
        for line in basket.lines
    ]
    tier_list = tiers.cached_tiers()
    multiplier, tier_code = _tier_multiplier(member, tier_list)
    result = engine.compute_points(
        basket,
        [*_rules_at(occurred_at, event=False), *member_rules(member.id, occurred_at)],
        tier_multiplier_pct=multiplier,
        tier_name=tier_code,
        context=engine.EarnContext(
            channel=channel.value, store_id=store_id, region=store.region if store else None
        ),
        now=occurred_at,
        discounts=OrderDiscounts(
            total_discount_minor=sum(line_discounts.values()),
            line_discounts=line_discounts,
            bonus_points=discounts.bonus_points,
            points_multiplier_pct=discounts.points_multiplier_pct,
        ),
    )
    pending_until = None
    if settings.pending_days > 0 and occurred_at + timedelta(days=settings.pending_days) > now:
        pending_until = occurred_at + timedelta(days=settings.pending_days)
    ledger_transaction_id = None
    if result.total > 0:
        tx = ledger.earn_points(
            member.id,
            result.total,
            ledger.Cause("order", order_cause_ref(order.id)),
            now=now,
            actor=actor,
            pending_until=pending_until,
            details={"order_id": external_id, "client_id": client_id},
            member_locked=True,
        )
        ledger_transaction_id = tx.id
        member_id = tx.member_id  # the person the points went to (a merge may have just moved them)
    else:
        pending_until = None
        member_id = member.id
    db.session.flush()
    _finish_order(
        order,
        lines,
        member_id,
        now,
        discount_minor=discount,
        total_minor=subtotal - discount,
        points_earned=result.total,
        pending_until=pending_until,
        breakdown=[entry.as_dict() for entry in result.breakdown],
        coupons=[dict(r) for r in discounts.redemptions],
        ledger_transaction_id=ledger_transaction_id,
    )
    tiers.reevaluate_member_tier(member_id, now, tiers=tier_list)
    return order, True


def _emit_order(topic: str, order: Order, member_id: int, now: datetime) -> None:
    """An order event (ids and amounts only), also when no points moved: the segment
    profiles count every purchase, and a zero-point order writes no ledger event."""
    outbox.emit(topic, member_id=member_id, payload=_order_payload(order), now=now)


def _order_payload(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "channel": order.channel,
        "store_id": order.store_id,
        "total_minor": order.total_minor,
        "refunded_minor": order.refunded_minor,
        "status": order.status,
    }


def _check_not_too_old(occurred_at: datetime, now: datetime, max_age_days: int) -> None:
    """An order is posted within OMNILOYAL_MAX_ORDER_AGE_DAYS of its purchase: a back-dated
    order would otherwise earn under long-ended promotions and skip its return window."""
    if occurred_at < now - timedelta(days=max_age_days):
        raise InvalidInput(
            f"occurred_at is more than {max_age_days} days in the past", field="occurred_at"
        )


@cache
def _order_id_query() -> sa.Select[Any]:
    """The id of a client's order by its external id (built once, run on every order)."""
    table = Order.__table__
    return sa.select(table.c.id).where(
        table.c.client_id == sa.bindparam("client_id"),
        table.c.external_id == sa.bindparam("external_id"),
    )


_FINAL_ORDER_FIELDS = (
    "discount_minor",
    "total_minor",
    "points_earned",
    "pending_until",
    "breakdown",
    "coupons",
    "ledger_transaction_id",
)


@cache
def _finish_order_statement() -> sa.Update:
    table = Order.__table__
    return (
        sa.update(table)
        .where(table.c.id == sa.bindparam("order_id"))
        .values({name: sa.bindparam(f"new_{name}") for name in _FINAL_ORDER_FIELDS})
    )


def _finish_order(
    order: Order, lines: list[dict[str, Any]], member_id: int, now: datetime, **final: Any
) -> None:
    """Insert the order's lines, write what earning computed (Core: no unit-of-work flush;
    the lines aren't read back in this request), keep the ORM object in step with the row
    and announce the order (`order.posted`, to `member_id`). On PostgreSQL the three are
    one statement: the event's INSERT with the lines' INSERT (from one JSON parameter) and
    the order's UPDATE as CTEs."""
    for name, value in final.items():
        set_committed_value(order, name, value)
    row = {"order_id": order.id, **{f"new_{name}": value for name, value in final.items()}}
    event = outbox.event_parameters("order.posted", member_id, _order_payload(order), now)
    if is_postgres():
        db.session.execute(_finish_and_announce_statement(), {**row, "order_lines": lines, **event})
    else:
        db.session.execute(plain_insert(OrderLine.__table__), lines)
        db.session.execute(_finish_order_statement(), row)
        db.session.execute(outbox.event_insert(), event)


# The columns of a line as `post_order` builds it.
_LINE_COLUMNS = (
    "order_id",
    "index",
    "sku",
    "category",
    "quantity",
    "unit_price_minor",
    "discount_minor",
    "refunded_quantity",
    "refunded_minor",
)


@cache
def _finish_and_announce_statement() -> sa.Insert:
    """PostgreSQL: `_finish_order` in one round trip (built once; the lines are one JSON
    parameter, `json_rows`)."""
    lines = OrderLine.__table__
    rows = json_rows("order_lines", {name: lines.c[name].type for name in _LINE_COLUMNS})
    insert_lines = sa.insert(lines).from_select(list(_LINE_COLUMNS), sa.select(rows))
    return outbox.event_insert().add_cte(
        insert_lines.cte("inserted_lines"), _finish_order_statement().cte("finished_order")
    )


def _allocate_discounts(basket: Basket, discounts: OrderDiscounts) -> dict[int, int]:
    """Per-line discounts that add up to the coupons' total discount (capped at the basket).

    Coupons report line discounts; an order-level remainder is spread over the lines in
    proportion to what is left of them, so refunds by line add up to the order total.
    """
    totals = {line.index: line.total_minor for line in basket.lines}
    allocated = {
        index: min(max(0, amount), totals.get(index, 0))
        for index, amount in discounts.line_discounts.items()
        if index in totals
    }
    target = min(max(discounts.total_discount_minor, sum(allocated.values())), basket.total_minor)
    remainder = target - sum(allocated.values())
    if remainder > 0:
        room = {index: totals[index] - allocated.get(index, 0) for index in totals}
        base = sum(room.values())
        shares = {index: remainder * left // base for index, left in room.items()} if base else {}
        leftover = remainder - sum(shares.values())
        for index in sorted(room, key=lambda i: room[i] - shares.get(i, 0), reverse=True):
            if leftover == 0:
                break
            extra = min(leftover, room[index] - shares.get(index, 0))
            shares[index] = shares.get(index, 0) + extra
            leftover -= extra
        for index, share in shares.items():
            allocated[index] = allocated.get(index, 0) + share
    return {index: amount for index, amount in allocated.items() if amount}


def _redeem_coupons(
    order: Order,
    basket: Basket,
    codes: Sequence[str],
    member: Member,
    now: datetime,
    actor: str,
) -> OrderDiscounts:
    try:
        from loyalty.coupons.operations import redeem_for_order  # type: ignore[import-not-found]
    except ImportError as error:
        if error.name not in {"loyalty.coupons", "loyalty.coupons.operations", None}:
            raise
        raise CouponsUnavailable("coupons are not available", field="coupon_codes") from None
    return redeem_for_order(
        order_id=order.id,
        codes=list(codes),
        member_id=member.id,
        client_id=order.client_id,
        basket=basket,
        now=now,
        actor=actor,
    )


def _rollback_coupons(order: Order, now: datetime, actor: str) -> None:
    if not order.coupons:
        return
    try:
        from loyalty.coupons.operations import (  # type: ignore[import-not-found]
            rollback_order_redemptions,
        )
    except ImportError:
        return
    rollback_order_redemptions(order_id=order.id, now=now, actor=actor)


def _lock_order(order_id: int) -> Order:
    """The order's member, then the order row, locked: refunds and cancels of one order run
    one after the other.

    Member first (docs/architecture.md, "Lock order"): a merge locks the members, then
    moves their orders. The owner is read without a lock, so a merge may move the order
    between that read and the member lock; the member lock follows the merge and the
    order, read again under it, must belong to the member now locked.
    """
    for _ in range(3):
        owner_id = db.session.scalar(sa.select(Order.member_id).where(Order.id == order_id))
        if owner_id is None:
            raise NotFound(f"no order {order_id}")
        member = lock_current_member(owner_id)
        order = db.session.scalars(
            sa.select(Order)
            .where(Order.id == order_id)
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        ).one()
        if order.member_id == member.id:
            return order
    raise Conflict(f"order {order_id} keeps moving between members; try again")


def _reverse(
    order: Order, points: int, share: tuple[int, int], cause_ref: str, now: datetime, actor: str
) -> dict:
    """Give back the points that paid for the refunded `share` of the order, then take back
    `points` of those it earned (by the return policy). In that order: a refund that brings
    points back covers the points it takes before anything is forgiven or clawed back."""
    policy = _settings().return_policy
    # The order's member now (merges followed; the ledger resolves again under its lock).
    member_id = current_member_id(order.member_id)
    cause = ledger.Cause("refund", cause_ref)
    returned, return_tx = _return_paid_points(order, member_id, share, cause, now, actor)
    result = ledger.reverse_earned(
        member_id,
        points,
        cause,
        earned_by=order_cause_ref(order.id),
        policy=policy,
        now=now,
        actor=actor,
        earned=order.points_earned,
        reversed_before=order.points_reversed,
    )
    return {
        "points_reversed": points,
        "revoked_pending": result.revoked_pending,
        "revoked_available": result.revoked_available,
        "clawed_back": result.clawed_back,
        "forgiven": result.forgiven,
        "already_expired": result.already_expired,
        "points_returned": returned,
        "policy": policy.value,
        "ledger_transaction_id": result.transaction.id if result.transaction else None,
        "return_transaction_id": return_tx.id if return_tx else None,
    }


def _return_paid_points(
    order: Order,
    member_id: int,
    share: tuple[int, int],
    cause: ledger.Cause,
    now: datetime,
    actor: str,
) -> tuple[int, ledger.LedgerTransaction | None]:
    """The points captured for this order (holds captured with its order id, by the same
    client or at the same store, for the same person), given back in `share`.

    The member's accounts are locked before the holds are read: a capture racing with
    this refund either committed first (and is seen here) or waits for the lock and then
    finds the order refunded or cancelled (see check_order_payable).
    """
    member_id = ledger.lock_member_accounts(member_id, require_active=False).member_id
    same_till = PointHold.client_id == order.client_id
    if order.store_id is not None:
        same_till = sa.or_(same_till, PointHold.store_id == order.store_id)
    candidates = db.session.scalars(
        sa.select(PointHold)
        .where(
            PointHold.order_ref == order.external_id,
            PointHold.status == HoldStatus.CAPTURED.value,
            same_till,
        )
        .order_by(PointHold.id)
    )
    hold_ids = [hold.id for hold in candidates if _same_person(hold.member_id, member_id)]
    return ledger.return_paid_points(member_id, hold_ids, share, cause, now=now, actor=actor)


def _same_person(member_id: int, survivor_id: int) -> bool:
    return current_member_id(member_id) == survivor_id


def check_order_payable(order_ref: str, *, client_id: int | None, store_id: str | None) -> None:
    """Points can't pay for an order that is already cancelled or fully refunded (they
    would never come back). An order not posted yet is fine: tills capture first."""
    try:
        order = find_order(order_ref, client_id=client_id, store_id=store_id)
    except NotFound:
        return
    if order.status in {OrderStatus.CANCELLED, OrderStatus.REFUNDED}:
        raise Conflict(f"order {order_ref!r} is {order.status}: points can't pay for it")


def refund_order(
    order: Order, data: Mapping[str, Any], *, client_id: int | None, now: datetime, actor: str
) -> tuple[Refund, bool]:
    """Refund part or all of an order: give back the points that paid for it and reverse
    the points it earned, both in proportion (docs/architecture.md, "Return policy").

    reversed so far = floor(points_earned * refunded_minor / total_minor) (by units for an
    order that cost nothing), so a full refund reverses exactly everything. Idempotent by
    (order, refund id). Returns (refund, created).
    """
    order = _lock_order(order.id)
    fingerprint = _fingerprint(
        {"lines": data.get("lines"), "amount_minor": data.get("amount_minor")}
    )
    earlier = db.session.scalar(
        sa.select(Refund).where(
            Refund.order_id == order.id, Refund.external_id == data["refund_id"]
        )
    )
    if earlier is not None:
        if earlier.fingerprint != fingerprint:
            raise RefundIdReused(f"refund {data['refund_id']!r} was already made with another body")
        return earlier, False
    if order.status == OrderStatus.CANCELLED:
        raise OrderCancelled(f"order {order.external_id!r} was cancelled")
    amount, line_record, all_lines_back = _refund_amount(order, data)
    cumulative = order.refunded_minor + amount
    if cumulative > order.total_minor:
        raise RefundExceedsOrder(
            f"refunds would total {cumulative}, the order total is {order.total_minor}",
            field="amount_minor",
            refundable_minor=order.total_minor - order.refunded_minor,
        )
    full = (order.total_minor > 0 and cumulative == order.total_minor) or all_lines_back
    share = _refunded_share(order, cumulative, full)
    target = order.points_earned * share[0] // share[1]
    delta = max(0, target - order.points_reversed)
    cause_ref = f"order:{order.id}/refund:{data['refund_id']}"
    reversal = _reverse(order, delta, share, cause_ref, now, actor)
    order.refunded_minor = cumulative
    order.points_reversed = max(target, order.points_reversed)
    order.status = (OrderStatus.REFUNDED if full else OrderStatus.PARTIALLY_REFUNDED).value
    order.updated_at = now
    refund = Refund(
        order_id=order.id,
        external_id=data["refund_id"],
        client_id=client_id,
        fingerprint=fingerprint,
        amount_minor=amount,
        lines=line_record,
        points_reversed=delta,
        revoked_pending=reversal["revoked_pending"],
        revoked_available=reversal["revoked_available"],
        clawed_back=reversal["clawed_back"],
        forgiven=reversal["forgiven"],
        already_expired=reversal["already_expired"],
        points_returned=reversal["points_returned"],
        policy=reversal["policy"],
        ledger_transaction_id=reversal["ledger_transaction_id"],
        created_at=now,
    )
    db.session.add(refund)
    if full:
        _rollback_coupons(order, now, actor)
    db.session.flush()
    _emit_order("order.refunded", order, order.member_id, now)
    return refund, True


def _refunded_share(order: Order, cumulative: int, full: bool) -> tuple[int, int]:
    """The part of the order refunded so far, as (numerator, denominator) > 0.

    By money; for an order that cost nothing (free items that still earned a bonus) by
    units: refunding 1 of 4 free items reverses a quarter of their points.
    """
    if full:
        return 1, 1
    if order.total_minor > 0:
        return cumulative, order.total_minor
    units, refunded = db.session.execute(
        sa.select(sa.func.sum(OrderLine.quantity), sa.func.sum(OrderLine.refunded_quantity)).where(
            OrderLine.order_id == order.id
        )
    ).one()
    return int(refunded or 0), int(units or 1)


def _refund_amount(order: Order, data: Mapping[str, Any]) -> tuple[int, list[dict[str, int]], bool]:
    """(amount, per-line record, whether every line is now fully refunded)."""
    if data.get("lines") is None:
        return data["amount_minor"], [], False
    lines = {
        line.index: line
        for line in db.session.scalars(
            sa.select(OrderLine)
            .where(OrderLine.order_id == order.id)
            .execution_options(populate_existing=True)
        )
    }
    amount, record = 0, []
    for item in data["lines"]:
        line = lines.get(item["index"])
        if line is None:
            raise InvalidInput(f"the order has no line {item['index']}", field="lines")
        left = line.quantity - line.refunded_quantity
        if item["quantity"] > left:
            raise RefundExceedsOrder(
                f"line {line.index}: {item['quantity']} refunded, {left} left", field="lines"
            )
        line.refunded_quantity += item["quantity"]
        if line.refunded_quantity == line.quantity:
            line_amount = line.net_minor - line.refunded_minor  # the rest, so lines add up
        else:
            line_amount = line.net_minor * item["quantity"] // line.quantity
        line.refunded_minor += line_amount
        amount += line_amount
        record.append(
            {"index": line.index, "quantity": item["quantity"], "amount_minor": line_amount}
        )
    all_back = all(line.refunded_quantity == line.quantity for line in lines.values())
    return amount, record, all_back


def cancel_order(order: Order, *, now: datetime, actor: str) -> Order:
    """Cancel an order: every point not yet reversed is reversed, the points that paid for
    it and its coupons are given back.

    Cancelling a cancelled order changes nothing and returns it as it is.
    """
    order = _lock_order(order.id)
    if order.status == OrderStatus.CANCELLED:
        return order
    delta = order.points_earned - order.points_reversed
    reversal = _reverse(order, delta, (1, 1), f"order:{order.id}/cancel", now, actor)
    was_refunded = order.status == OrderStatus.REFUNDED
    order.points_reversed = order.points_earned
    order.status = OrderStatus.CANCELLED.value
    order.cancellation = {**reversal, "cancelled_at": now.isoformat()}
    order.updated_at = now
    if not was_refunded:
        _rollback_coupons(order, now, actor)
    db.session.flush()
    _emit_order("order.cancelled", order, order.member_id, now)
    return order


def order_lines(order_id: int) -> list[OrderLine]:
    return list(
        db.session.scalars(
            sa.select(OrderLine).where(OrderLine.order_id == order_id).order_by(OrderLine.index)
        )
    )


# --- non-purchase activities ----------------------------------------------------------------


def _dedupe_key(
    kind: ActivityKind, member: Member, now: datetime, referred: int | None, birthday: date | None
) -> str:
    if kind in {ActivityKind.SIGNUP, ActivityKind.PROFILE_COMPLETED}:
        return "once"
    if kind == ActivityKind.BIRTHDAY:
        # The year of the birthday being celebrated, not of the claim: 28 December and
        # 5 January both celebrate a 3 January birthday, once.
        assert birthday is not None
        return str(birthday.year)
    if kind == ActivityKind.APP_CHECKIN:
        return local(now, member.timezone).date().isoformat()
    return f"member:{referred}"


def _same_day_checkin(member: Member, now: datetime) -> ActivityEvent | None:
    """The member's last check-in when it falls on today's local date, judged both in the
    timezone it was made in and in the member's current one.

    The dedupe key alone is the local date in the current timezone, which the member can
    change: without this, moving the timezone ahead across midnight would open a second
    check-in on the same day. With it, whatever the timezone changes, two paid check-ins
    are always on different days of both timezones involved (as for a member who never
    changes it).
    """
    last = db.session.scalar(
        sa.select(ActivityEvent)
        .where(
            ActivityEvent.member_id == member.id,
            ActivityEvent.kind == ActivityKind.APP_CHECKIN.value,
        )
        .order_by(ActivityEvent.created_at.desc(), ActivityEvent.id.desc())
        .limit(1)
    )
    if last is None:
        return None
    for timezone in {last.timezone or member.timezone, member.timezone}:
        if local(last.created_at, timezone).date() >= local(now, timezone).date():
            return last
    return None


def record_activity(
    member_id: int,
    kind: str,
    *,
    reference: str | None,
    referred_member_id: int | None,
    client_id: int | None,
    now: datetime,
    actor: str,
) -> tuple[ActivityEvent, bool]:
    """Earn the event bonus for a non-purchase activity, at most once per dedupe period.

    Sign-up and profile completion: once. Birthday: once per year, check-in: once per day,
    both in the member's timezone. Referral: once per referred member (whoever refers them).
    Returns (activity, created); a repeat returns the earlier activity and earns nothing.
    """
    activity_kind = ActivityKind(kind)
    member, _ = _existing_member(member_id)
    # The member row first (docs/architecture.md, "Lock order"): the activity's unique key
    # below makes a concurrent duplicate wait for us, and a merge moves activities after
    # locking the members.
    member = lock_current_member(member.id)
    _require_active(member)
    referred_id = None
    if activity_kind == ActivityKind.REFERRAL:
        referred_id = _check_referral(member, referred_member_id)
    elif referred_member_id is not None:
        raise InvalidInput("referred_member_id is only for referrals", field="referred_member_id")
    birthday = _check_birthday(member, now) if activity_kind == ActivityKind.BIRTHDAY else None
    earlier: ActivityEvent | None = None
    if activity_kind == ActivityKind.APP_CHECKIN:
        earlier = _same_day_checkin(member, now)
    elif activity_kind == ActivityKind.BIRTHDAY:
        earlier = _recent_birthday(member, now)
    if earlier is not None:
        return earlier, False
    dedupe = _dedupe_key(activity_kind, member, now, referred_id, birthday)
    table = ActivityEvent.__table__
    inserted = db.session.execute(
        upsert_insert(table)
        .values(
            member_id=member.id,
            kind=activity_kind.value,
            dedupe_key=dedupe,
            reference=reference,
            referred_member_id=referred_id,
            client_id=client_id,
            timezone=member.timezone,
            points=0,
            breakdown=[],
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(table.c.id)
    ).scalar()
    if inserted is None:
        earlier = db.session.scalar(
            sa.select(ActivityEvent).where(
                ActivityEvent.member_id == member.id,
                ActivityEvent.kind == activity_kind.value,
                ActivityEvent.dedupe_key == dedupe,
            )
        )
        if earlier is None:  # the referral unique key: someone else referred them first
            raise Conflict(f"member {referred_id} was already referred", field="referred_member_id")
        return earlier, False
    activity = db.session.get(ActivityEvent, inserted)
    assert activity is not None
    result = engine.compute_event_points(
        activity_kind.value,
        _rules_at(now, event=True),
        context=engine.EarnContext(channel=None, region=member.region),
        now=now,
    )
    if result.total > 0:
        tx = ledger.earn_points(
            member.id,
            result.total,
            ledger.Cause("activity", f"{activity_kind.value}:{dedupe}"),
            now=now,
            actor=actor,
            details={"activity_id": activity.id},
            member_locked=True,
        )
        activity.ledger_transaction_id = tx.id
    activity.points = result.total
    activity.breakdown = [entry.as_dict() for entry in result.breakdown]
    db.session.flush()
    if result.total > 0:
        tiers.reevaluate_member_tier(tx.member_id, now)
    return activity, True


BIRTHDAY_WINDOW_DAYS = 7


def _check_birthday(member: Member, now: datetime) -> date:
    """The birthday bonus is earned within a week of the birthday, in the member's timezone.

    Returns the birthday being celebrated (its year is the dedupe key).
    """
    if member.birthday is None:
        raise InvalidInput("the member has no birthday on record", field="kind")
    today = local(now, member.timezone).date()
    for year in (today.year - 1, today.year, today.year + 1):
        day = min(member.birthday.day, calendar.monthrange(year, member.birthday.month)[1])
        celebrated = date(year, member.birthday.month, day)
        if abs((celebrated - today).days) <= BIRTHDAY_WINDOW_DAYS:
            return celebrated
    raise InvalidInput(
        f"the birthday bonus is earned within {BIRTHDAY_WINDOW_DAYS} days of the birthday",
        field="kind",
    )


def _recent_birthday(member: Member, now: datetime) -> ActivityEvent | None:
    """A birthday bonus recorded within the claim window's span: it celebrated the same
    birthday, whatever its key says (keys recorded before the key became the celebrated
    birthday's year were the claim's year). Birthdays are a year apart, so the next one is
    never refused."""
    return db.session.scalar(
        sa.select(ActivityEvent)
        .where(
            ActivityEvent.member_id == member.id,
            ActivityEvent.kind == ActivityKind.BIRTHDAY.value,
            ActivityEvent.created_at > now - timedelta(days=2 * BIRTHDAY_WINDOW_DAYS + 1),
        )
        .order_by(ActivityEvent.created_at.desc(), ActivityEvent.id.desc())
        .limit(1)
    )


def _check_referral(member: Member, referred_member_id: int | None) -> int:
    if referred_member_id is None:
        raise InvalidInput("a referral needs referred_member_id", field="referred_member_id")
    try:
        referred = get_member(referred_member_id)
    except NotFound:
        raise InvalidInput(f"no member {referred_member_id}", field="referred_member_id") from None
    if referred.id == member.id:
        raise InvalidInput("a member can't refer themselves", field="referred_member_id")
    if referred.created_at < member.created_at:
        raise InvalidInput(
            "only a member who joined after the referrer counts as referred",
            field="referred_member_id",
        )
    return referred.id


# --- member lifecycle hooks -----------------------------------------------------------------


def merge_orders_and_activities(merged_id: int, survivor_id: int, now: datetime) -> dict:
    """Merge step: the merged member's orders and activities now belong to the survivor.

    Activities the survivor already has (a second sign-up bonus...) stay with the merged
    member as history, so the once-only rules keep holding for the survivor.
    """
    orders = db.session.execute(
        sa.update(Order)
        .where(Order.member_id == merged_id)
        .values(member_id=survivor_id, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    theirs = sa.orm.aliased(ActivityEvent)
    activities = db.session.execute(
        sa.update(ActivityEvent)
        .where(
            ActivityEvent.member_id == merged_id,
            ~sa.exists().where(
                theirs.member_id == survivor_id,
                theirs.kind == ActivityEvent.kind,
                theirs.dedupe_key == ActivityEvent.dedupe_key,
            ),
        )
        .values(member_id=survivor_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    return {"orders": orders or 0, "activities": activities or 0}


def export_member_orders(member_id: int) -> dict[str, Any]:
    """Privacy export section: the member's orders (with lines and refunds) and activities,
    including those kept by members merged into this one."""
    member_ids = history_member_ids(member_id)
    orders = list(
        db.session.scalars(
            sa.select(Order).where(Order.member_id.in_(member_ids)).order_by(Order.id)
        )
    )
    order_ids = [order.id for order in orders]
    lines: dict[int, list[dict[str, Any]]] = {}
    refunds: dict[int, list[dict[str, Any]]] = {}
    if order_ids:
        for line in db.session.scalars(
            sa.select(OrderLine).where(OrderLine.order_id.in_(order_ids)).order_by(OrderLine.id)
        ):
            lines.setdefault(line.order_id, []).append(
                {
                    "index": line.index,
                    "sku": line.sku,
                    "category": line.category,
                    "quantity": line.quantity,
                    "unit_price_minor": line.unit_price_minor,
                    "discount_minor": line.discount_minor,
                }
            )
        for refund in db.session.scalars(
            sa.select(Refund).where(Refund.order_id.in_(order_ids)).order_by(Refund.id)
        ):
            refunds.setdefault(refund.order_id, []).append(
                {
                    "refund_id": refund.external_id,
                    "amount_minor": refund.amount_minor,
                    "points_reversed": refund.points_reversed,
                    "created_at": refund.created_at.isoformat(),
                }
            )
    activities = db.session.scalars(
        sa.select(ActivityEvent)
        .where(ActivityEvent.member_id.in_(member_ids))
        .order_by(ActivityEvent.id)
    )
    return {
        "orders": [
            {
                "order_id": order.external_id,
                "channel": order.channel,
                "store_id": order.store_id,
                "currency": order.currency,
                "total_minor": order.total_minor,
                "occurred_at": order.occurred_at.isoformat(),
                "status": order.status,
                "points_earned": order.points_earned,
                "points_reversed": order.points_reversed,
                "lines": lines.get(order.id, []),
                "refunds": refunds.get(order.id, []),
            }
            for order in orders
        ],
        "activities": [
            {
                "kind": activity.kind,
                "key": activity.dedupe_key,
                "points": activity.points,
                "created_at": activity.created_at.isoformat(),
            }
            for activity in activities
        ],
    }
