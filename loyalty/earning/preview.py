"""A dry run of an order: the points a basket would earn, rule by rule, and the discounts
its coupon codes would give, for the cart page and the till screen. It writes nothing:
no order, no member (an unknown one is not enrolled), no code use, no hold, no counter.

It reads what `post_order` reads (the rules in force at `occurred_at`, the member's tier,
the codes' offers) and computes with the same functions, so an order posted right after
with the same basket earns what the preview said, unless something changed in between (a
code used up, a rule ended, a tier changed). Failed code guesses count toward the abuse
lockout like `POST /v1/coupons/validate` (in Redis): a preview is no free code oracle.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from loyalty.basket import OrderDiscounts
from loyalty.earning import engine
from loyalty.earning.operations import (
    _IDENTITY_FIELDS,
    CLOCK_SKEW,
    _allocate_discounts,
    _basket,
    _check_store,
    _require_active,
    _rules_at,
    _settings,
    _tier_multiplier,
)
from loyalty.errors import InvalidInput, NotFound
from loyalty.members.identities import phone_region
from loyalty.members.models import Member
from loyalty.members.operations import find_member_by_external_id, find_member_by_identity
from loyalty.members.resolution import get_member
from loyalty.stores.models import Channel
from loyalty.tiers import operations as tiers


def preview_order(
    data: Mapping[str, Any], *, now: datetime, evaluate_codes: Any = None
) -> dict[str, Any]:
    """What `post_order(data)` would give, without writing anything.

    `evaluate_codes(codes, basket, member_id)` returns the coupons' Evaluation (the API
    passes one that also counts failed guesses); by default the coupons' own `evaluate`.
    """
    settings = _settings()
    if data["currency"] not in settings.currencies:
        raise InvalidInput(f"{data['currency']!r} is not a configured currency", field="currency")
    channel = Channel(data["channel"])
    store = _check_store(data.get("store_id"), channel)
    store_id = store.id if store is not None else None
    occurred_at = (data.get("occurred_at") or now).astimezone(UTC)
    if occurred_at > now + CLOCK_SKEW:
        raise InvalidInput("occurred_at is in the future", field="occurred_at")
    member = _known_member(data.get("member"), store_id)
    if member is not None:
        _require_active(member)
    basket = _basket(data, channel.value, store_id)
    coupons = None
    discounts = OrderDiscounts()
    if data.get("coupon_codes"):
        evaluation = _evaluate(evaluate_codes, data["coupon_codes"], basket, member, now)
        totals = evaluation.totals()
        discounts = OrderDiscounts(
            total_discount_minor=totals["total_discount_minor"],
            line_discounts=totals["line_discounts"],
            bonus_points=totals["bonus_points"],
            points_multiplier_pct=totals["points_multiplier_pct"],
        )
        coupons = evaluation.as_dict()
    line_discounts = _allocate_discounts(basket, discounts)
    tier_list = tiers.cached_tiers()
    multiplier, tier_code = _tier_multiplier(member, tier_list) if member else (100, None)
    result = engine.compute_points(
        basket,
        _rules_at(occurred_at, event=False),
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
    subtotal = basket.total_minor
    discount = sum(line_discounts.values())
    pending_until = None
    pending_days = timedelta(days=settings.pending_days)
    if result.total > 0 and settings.pending_days > 0 and occurred_at + pending_days > now:
        pending_until = occurred_at + pending_days
    return {
        "member_id": member.id if member is not None else None,
        "member_known": member is not None,
        "tier": tier_code,
        "currency": data["currency"],
        "subtotal_minor": subtotal,
        "discount_minor": discount,
        "total_minor": subtotal - discount,
        "line_discounts": [
            {"line": index, "discount_minor": amount}
            for index, amount in sorted(line_discounts.items())
        ],
        "points": result.total,
        "breakdown": [entry.as_dict() for entry in result.breakdown],
        "pending_until": pending_until,
        "coupons": coupons,
    }


def _evaluate(
    evaluate_codes: Any, codes: list[str], basket: Any, member: Member | None, now: datetime
) -> Any:
    if evaluate_codes is None:
        try:
            from loyalty.coupons.operations import evaluate  # type: ignore[import-not-found]
        except ImportError:
            from loyalty.earning.operations import CouponsUnavailable

            raise CouponsUnavailable("coupons are not available", field="coupon_codes") from None

        def evaluate_codes(codes: list[str], basket: Any, member_id: int | None) -> Any:
            return evaluate(codes, basket, member_id=member_id, now=now)

    return evaluate_codes(codes, basket, member.id if member is not None else None)


def _known_member(spec: Mapping[str, Any] | None, store_id: str | None) -> Member | None:
    """The member the basket names, if any and known; never enrolled, never a QR token's
    one use. An unknown identity is a preview for a new member (no tier); an unknown id or
    external id is a 404 like the order would give."""
    if not spec:
        return None
    if spec.get("member_id") is not None:
        return get_member(spec["member_id"])
    if spec.get("external_id"):
        member = find_member_by_external_id(spec["external_id"])
        if member is None:
            from loyalty.members.operations import MemberNotFound

            raise MemberNotFound(f"no member has external id {spec['external_id']!r}")
        return member
    region = phone_region(store_id=store_id)
    for kind in _IDENTITY_FIELDS:
        if spec.get(kind):
            try:
                found = find_member_by_identity(kind, spec[kind], default_region=region)
            except NotFound:
                found = None
            if found is not None:
                return found
    return None
