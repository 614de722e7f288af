"""Earning HTTP API: POS and web shop orders, refunds, cancellations, activities; rules (admin).

`{order_id}` in URLs is the calling client's own external order id.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from flask import Response, jsonify, make_response, request
from marshmallow import ValidationError

from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import Caller, current_caller, ensure_store, requires
from loyalty.clock import utcnow
from loyalty.earning import operations, preview
from loyalty.earning.models import ActivityEvent, Order, Refund
from loyalty.earning.schemas import (
    ActivityEventRequestSchema,
    ActivityEventSchema,
    OrderPreviewRequestSchema,
    OrderPreviewSchema,
    OrderRequestSchema,
    OrderSchema,
    RefundRequestSchema,
    RefundSchema,
    RuleCreateSchema,
    RulePageSchema,
    RuleQuery,
    RuleSchema,
    RuleUpdateSchema,
)
from loyalty.http import REPLAY_HEADER, replay_finder, replayed, write_endpoint
from loyalty.pagination import page_of

blp = Blueprint(
    "earning", __name__, description="Earning: orders, refunds, activities and earning rules"
)


def _caller_order(order_id: str) -> Order:
    """The caller's order (or its store's); a store key may not touch another store's."""
    caller = current_caller()
    order = operations.find_order(order_id, client_id=caller.client_id, store_id=caller.store_id)
    if order.store_id is not None:
        ensure_store(caller, order.store_id)
    return order


def _status(created: bool) -> int:
    return 201 if created else 200


# --- orders ---------------------------------------------------------------------------------


@blp.route("/orders", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ORDERS_WRITE)
@write_endpoint(key_required=False)
@blp.arguments(OrderRequestSchema)
@blp.response(201, OrderSchema)
def post_order(data: dict[str, Any]) -> Any:
    """Post an order: points are earned with a breakdown per rule.

    Idempotent by the order id (and by Idempotency-Key when sent): posting it again returns
    the first result, 201 with `Idempotent-Replayed: true`; other content under the same
    id is a 409 `order-id-reused`. A member named by
    an identity nobody has yet is enrolled ("enrol anywhere"). A store-bound key posts for
    its own store only (and by default).
    """
    caller = current_caller()
    store_id = data["store_id"] or caller.store_id
    ensure_store(caller, store_id)
    assert caller.client_id is not None
    if data.get("coupon_codes"):  # a repeat replays before the lockout can refuse it
        earlier = operations.earlier_order(
            {**data, "store_id": store_id}, client_id=caller.client_id
        )
        if earlier is not None:
            return replayed(earlier, 201)
    with _coupon_guess_lockout(caller, data.get("coupon_codes")):
        order, created = operations.post_order(
            {**data, "store_id": store_id},
            client_id=caller.client_id,
            now=utcnow(),
            actor=caller.actor,
        )
    return (order, 201) if created else replayed(order, 201)


@replay_finder("earning.post_order")
def _repeated_order() -> Response | None:
    """An order posted again with its order id, recognised before the handler runs (the
    rate limiter refused it): the first result, like the handler would answer."""
    caller = current_caller()
    if caller.client_id is None:
        return None
    try:
        data = OrderRequestSchema().load(request.get_json(silent=True) or {})
    except ValidationError:
        return None
    store_id = data["store_id"] or caller.store_id
    earlier = operations.earlier_order({**data, "store_id": store_id}, client_id=caller.client_id)
    if earlier is None:
        return None
    response = make_response(jsonify(OrderSchema().dump(earlier)), 201)
    response.headers[REPLAY_HEADER] = "true"
    return response


def _coupon_guess_lockout(caller: Caller, codes: list[str] | None) -> AbstractContextManager[Any]:
    """Orders with coupon codes go through the coupons' guess lockout like the coupon
    routes do: a locked-out caller gets 429, unknown codes count against the key (and
    its bound store), and with Redis down the order is refused with 503."""
    if not codes:
        return nullcontext()
    try:
        from loyalty.coupons import abuse  # type: ignore[import-not-found]
    except ImportError as error:  # coupons not installed: the order refuses the codes
        if error.name not in {"loyalty.coupons", "loyalty.coupons.abuse", None}:
            raise
        return nullcontext()
    return abuse.guarded(
        abuse.subjects(client_id=caller.client_id, bound_store_id=caller.store_id, member_id=None)
    )


@blp.route("/orders/preview", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ORDERS_WRITE)
@blp.arguments(OrderPreviewRequestSchema)
@blp.response(200, OrderPreviewSchema)
def preview_order(data: dict[str, Any]) -> Any:
    """A dry run of an order, for the cart page and the till screen: the points the basket
    would earn (per rule) and what its coupon codes would take off. Writes nothing: no
    order, no member enrolled, no code use, hold or counter. Unknown codes count toward the
    guess lockout, as in `POST /v1/coupons/validate`."""
    caller = current_caller()
    store_id = data["store_id"] or caller.store_id
    ensure_store(caller, store_id)
    return preview.preview_order(
        {**data, "store_id": store_id},
        now=utcnow(),
        evaluate_codes=_guarded_evaluation(caller),
    )


def _guarded_evaluation(caller: Caller) -> Any:
    """Evaluate codes like the coupons' validate does: refused while locked out, failed
    guesses counted (Redis) against the key and its store."""
    try:
        from loyalty.coupons import abuse  # type: ignore[import-not-found]
        from loyalty.coupons import operations as coupons
    except ImportError:
        return None

    def evaluate(codes: list[str], basket: Any, member_id: int | None) -> Any:
        subjects = abuse.subjects(
            client_id=caller.client_id, bound_store_id=caller.store_id, member_id=None
        )
        abuse.ensure_not_locked(subjects)
        evaluation = coupons.evaluate(codes, basket, member_id=member_id, now=utcnow())
        guesses = abuse.guesses_in({r.code: r.reasons for r in evaluation.results if r.reasons})
        if guesses:
            abuse.record_failures(subjects, guesses)
        return evaluation

    return evaluate


@blp.route("/orders/<order_id>")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ORDERS_WRITE)
@blp.response(200, OrderSchema)
def get_order(order_id: str) -> Any:
    """An order posted by this client (or, for a store-bound key, at its store)."""
    return _caller_order(order_id)


def _refund_view(refund: Refund, order: Order) -> dict[str, Any]:
    return {
        "external_id": refund.external_id,
        "order_id": order.external_id,
        "order_status": order.status,
        "amount_minor": refund.amount_minor,
        "lines": refund.lines,
        "points_reversed": refund.points_reversed,
        "revoked_pending": refund.revoked_pending,
        "revoked_available": refund.revoked_available,
        "clawed_back": refund.clawed_back,
        "forgiven": refund.forgiven,
        "already_expired": refund.already_expired,
        "points_returned": refund.points_returned,
        "policy": refund.policy,
        "created_at": refund.created_at,
    }


@blp.route("/orders/<order_id>/refunds", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ORDERS_WRITE)
@write_endpoint(key_required=False)
@blp.arguments(RefundRequestSchema)
@blp.response(201, RefundSchema)
def refund_order(data: dict[str, Any], order_id: str) -> Any:
    """Refund lines or an amount; points are reversed in proportion, by the return policy.

    The response says what happened to the points: revoked while pending, revoked from the
    available balance, clawed back as debt, or forgiven. Idempotent by refund_id: the same
    refund again answers 201 with the first result and `Idempotent-Replayed: true`.
    """
    caller = current_caller()
    order = _caller_order(order_id)
    refund, created = operations.refund_order(
        order, data, client_id=caller.client_id, now=utcnow(), actor=caller.actor
    )
    view = _refund_view(refund, order)
    return (view, 201) if created else replayed(view, 201)


@blp.route("/orders/<order_id>/cancel", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ORDERS_WRITE)
@write_endpoint(key_required=False)
@blp.response(200, OrderSchema)
def cancel_order(order_id: str) -> Any:
    """Cancel the order: all its points are reversed.

    Cancelling again changes nothing and answers the same, with `Idempotent-Replayed: true`.
    """
    order = _caller_order(order_id)
    now = utcnow()
    order = operations.cancel_order(order, now=now, actor=current_caller().actor)
    if (order.cancellation or {}).get("cancelled_at") != now.isoformat():
        return replayed(order, 200)  # cancelled by an earlier request
    return order


# --- activities -----------------------------------------------------------------------------


def _activity_view(activity: ActivityEvent, created: bool) -> dict[str, Any]:
    return {
        "id": activity.id,
        "member_id": activity.member_id,
        "kind": activity.kind,
        "dedupe_key": activity.dedupe_key,
        "reference": activity.reference,
        "referred_member_id": activity.referred_member_id,
        "points": activity.points if created else 0,
        "breakdown": activity.breakdown if created else [],
        "already_earned": not created,
        "created_at": activity.created_at,
    }


@blp.route("/members/<member:member_id>/activities", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ORDERS_WRITE)
@write_endpoint(key_required=False)
@blp.arguments(ActivityEventRequestSchema)
@blp.response(201, ActivityEventSchema)
@blp.alt_response(200, schema=ActivityEventSchema, description="Already earned: zero points")
def record_activity(data: dict[str, Any], member_id: int) -> Any:
    """A non-purchase event (sign-up, birthday, profile completed, app check-in, referral).

    Earns the matching event bonus rules once per member (birthday once a year, check-in
    once a day in the member's timezone, referral once per referred member); a repeat
    answers 200 with zero points.
    """
    caller = current_caller()
    activity, created = operations.record_activity(
        member_id,
        data["kind"],
        reference=data["key"],
        referred_member_id=data["referred_member_id"],
        client_id=caller.client_id,
        now=utcnow(),
        actor=caller.actor,
    )
    return _activity_view(activity, created), _status(created)


# --- earning rules (admin) ------------------------------------------------------------------


@blp.route("/earning-rules")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@blp.arguments(RuleQuery, location="query")
@blp.response(200, RulePageSchema)
def list_rules(query: dict[str, Any]) -> Any:
    """List the earning rules, optionally by kind or active flag."""
    rules = operations.list_rules(kind=query["kind"], active=query["active"])
    return page_of(rules, cursor=query["cursor"], limit=query["limit"], key=lambda r: r.id)


@blp.route("/earning-rules", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(RuleCreateSchema)
@blp.response(201, RuleSchema)
def create_rule(data: dict[str, Any]) -> Any:
    """Add an earning rule: base rate, multiplier, bonus, promotion, order cap, event bonus."""
    return operations.create_rule(data, now=utcnow())


@blp.route("/earning-rules/<int:rule_id>")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@blp.response(200, RuleSchema)
def get_rule(rule_id: int) -> Any:
    """Get an earning rule."""
    return operations.get_rule(rule_id)


@blp.route("/earning-rules/<int:rule_id>", methods=["PATCH"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(RuleUpdateSchema)
@blp.response(200, RuleSchema)
def update_rule(data: dict[str, Any], rule_id: int) -> Any:
    """Change a rule; the result is validated as a whole."""
    return operations.update_rule(rule_id, data, now=utcnow())


@blp.route("/earning-rules/<int:rule_id>", methods=["DELETE"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.response(204)
def delete_rule(rule_id: int) -> None:
    """Remove a rule (past orders keep their breakdown). Deactivating keeps it listed."""
    operations.delete_rule(rule_id)


def _register_member_hooks() -> None:
    """Orders and activities follow a merge, appear in the member's data export, and
    erasure scrubs what they may hold of the person (loyalty.earning.privacy)."""
    from loyalty.earning.privacy import erase_member_earning
    from loyalty.members import merge

    merge.register_merge_step(operations.merge_orders_and_activities)
    from loyalty.members import privacy

    privacy.register_export_section("orders", operations.export_member_orders)
    privacy.register_erase_step("earning", erase_member_earning)


_register_member_hooks()
