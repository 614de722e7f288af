"""Coupons HTTP API: offers and codes (admin), validation and redemption (POS, web shop),
the member's wallet and rewards (member app).

POS / web shop redemption (scope coupons:redeem) -- the endpoint the benchmark drives:

    POST /v1/coupons/redeem
    Authorization: Bearer olk_...        (a store-bound key redeems for its own store only)
    Idempotency-Key: <unique per attempt, reused on retry>
    {"codes": ["ABCD-EFGH-JKMN"], "order_ref": "till-7/000123", "channel": "store",
     "store_id": "S001" (optional for a store-bound key), "currency": "EUR",
     "member_id": 42 (optional),
     "lines": [{"sku": "SKU1", "category": "shoes", "quantity": 1, "unit_price_minor": 5000}]}

    201 {"checkout_ref": "...", "status": "redeemed", "replayed": false,
         "total_discount_minor": 500, "line_discounts": [{"line": 0, "discount_minor": 500}],
         "bonus_points": 0, "points_multiplier_pct": 100,
         "redemptions": [{"id": 1, "code": "ABCDEFGHJKMN", "offer_id": 3, "offer_version": 1,
                          "status": "redeemed", "discount_minor": 500, ...}]}
    409 problem (type .../coupon-unavailable): a limit is used up; `reason`, `reasons`
    422 problem (type .../coupon-not-applicable): the code doesn't apply; `reason`, `reasons`
    429 problem with Retry-After: locked out after repeated unknown codes

All codes of one call are redeemed together or not at all. Posting the same codes again for
the same order_ref returns the first redemptions ("replayed": true) without a second use.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, after_this_request, current_app, stream_with_context

from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import Caller, current_caller, ensure_store, requires, requires_member
from loyalty.clock import utcnow
from loyalty.coupons import abuse, offers, operations, wallet
from loyalty.coupons.codes import MAX_BATCH_AT_ONCE
from loyalty.coupons.models import CouponOfferVersion, CouponRedemption
from loyalty.coupons.schemas import (
    BatchSchema,
    CheckoutSchema,
    CodeSchema,
    CouponCaptureSchema,
    CouponHoldRequestSchema,
    GenerateSchema,
    ImportResultSchema,
    ImportSchema,
    IssuedSchema,
    IssueSchema,
    MemberValidateSchema,
    OfferCreateSchema,
    OfferQuery,
    OfferSchema,
    OfferStatsSchema,
    OfferUpdateSchema,
    OfferVersionSchema,
    RedeemSchema,
    RedemptionSchema,
    RewardCreateSchema,
    RewardSchema,
    RewardUpdateSchema,
    RollbackRequestSchema,
    RollbackResultSchema,
    RollbacksRequestSchema,
    SharedCodeCreateSchema,
    ValidateSchema,
    ValidationResultSchema,
    WalletQuery,
    WalletSchema,
    basket_from,
)
from loyalty.db import db
from loyalty.errors import InvalidInput, NotFound
from loyalty.http import REPLAY_HEADER, replayed, write_endpoint
from loyalty.members.resolution import get_member
from loyalty.pagination import PageQuery, int_cursor, page, page_of, page_schema
from loyalty.stores.models import Channel, Store
from loyalty.timezones import local

blp = Blueprint("coupons", __name__, description="Coupons: offers, codes, redemption, wallet")

API_KEY = [{"ApiKey": []}]
MEMBER = [{"MemberToken": []}]


# --- helpers ------------------------------------------------------------------------------------


def _offer_view(offer: Any) -> Any:
    return _offer_views([offer])[0]


def _offer_views(found: list[Any]) -> list[dict[str, Any]]:
    """Offers as shown: terms in the units sent, counters for every offer (one query)."""
    totals = operations.offer_totals(found)
    views = []
    for offer in found:
        view = {name: getattr(offer, name) for name in OFFER_COLUMNS}
        view["terms"] = offers.present_terms(offers.current_terms(offer).to_json())
        view["redemptions_count"], view["discount_spent_minor"] = totals[offer.id]
        views.append(view)
    return views


OFFER_COLUMNS = (
    "id",
    "name",
    "description",
    "status",
    "version",
    "max_redemptions",
    "budget_minor",
    "per_member_limit",
    "has_codes",
    "campaign_id",
    "extra",
    "created_at",
    "updated_at",
)


def _store_for(caller: Caller, data: dict[str, Any]) -> str | None:
    """The basket's store: given, or the key's own; a store key acts for its store only."""
    store_id = data.get("store_id") or caller.store_id
    ensure_store(caller, store_id)
    if Channel(data["channel"]).needs_store and store_id is None:
        raise InvalidInput(f"a {data['channel']} basket needs a store_id", field="store_id")
    if store_id is not None and caller.store_id is None and db.session.get(Store, store_id) is None:
        raise InvalidInput(f"no store {store_id!r}", field="store_id")
    return store_id


def _member_id(given: int | None) -> int | None:
    return None if given is None else get_member(given).id


def _lockout_subjects(caller: Caller) -> list[str]:
    """Who a failed guess counts against: the caller's key, its bound store, or the person
    behind a member token (merges followed: a token minted before a merge shares the
    survivor's count); never a store named in the body (see loyalty.coupons.abuse)."""
    return abuse.subjects(
        client_id=caller.client_id,
        bound_store_id=caller.store_id,
        member_id=caller.person_id or caller.member_id,
    )


def _record_guesses(evaluation: operations.Evaluation, subjects: list[str]) -> None:
    guesses = abuse.guesses_in({r.code: r.reasons for r in evaluation.results if r.reasons})
    if guesses:
        abuse.record_failures(subjects, guesses)


def _checkout_view(checkout: operations.Checkout) -> dict[str, Any]:
    totals = checkout.totals()
    return {
        "checkout_ref": checkout.checkout_ref,
        "status": checkout.status,
        "replayed": checkout.replayed,
        "total_discount_minor": totals.total_discount_minor,
        "line_discounts": [
            {"line": i, "discount_minor": d} for i, d in sorted(totals.line_discounts.items())
        ],
        "bonus_points": totals.bonus_points,
        "points_multiplier_pct": totals.points_multiplier_pct,
        "redemptions": checkout.redemptions,
    }


def _visible(redemptions: list[CouponRedemption], caller: Caller) -> bool:
    """A store key sees its store's redemptions; other keys their own (admins: all)."""
    if not redemptions:
        return False
    if caller.store_id is not None:
        return all(r.store_id == caller.store_id for r in redemptions)
    if scopes.COUPONS_ADMIN in caller.scopes:
        return True
    return all(r.client_id == caller.client_id for r in redemptions)


def _own_redemption(redemption_id: int) -> CouponRedemption:
    redemption = db.session.get(CouponRedemption, redemption_id)
    if redemption is None or not _visible([redemption], current_caller()):
        raise NotFound(f"no redemption {redemption_id}")
    return redemption


def _own_checkout(checkout_ref: str) -> None:
    rows = list(
        db.session.scalars(
            db.select(CouponRedemption).where(CouponRedemption.checkout_ref == checkout_ref)
        )
    )
    if not _visible(rows, current_caller()):
        raise NotFound(f"no coupon hold {checkout_ref}")


def _hold_ttl(given: int | None) -> int:
    return given or current_app.extensions["omniloyal.settings"].hold_ttl_seconds


# --- offers (admin) -----------------------------------------------------------------------------


@blp.route("/coupons/offers", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@write_endpoint()
@blp.arguments(OfferCreateSchema)
@blp.response(201, OfferSchema)
def create_offer(data: dict[str, Any]) -> Any:
    """Create an offer: what it gives, its conditions, validity, limits and stacking."""
    return _offer_view(offers.create_offer(data, now=utcnow(), actor=current_caller().actor))


@blp.route("/coupons/offers")
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@blp.arguments(OfferQuery, location="query")
@blp.response(200, page_schema(OfferSchema))
def list_offers(query: dict[str, Any]) -> Any:
    """List offers, oldest first, optionally by status."""
    found = offers.list_offers(
        status=query["status"], limit=query["limit"] + 1, after_id=int_cursor(query["cursor"])
    )
    return page(_offer_views(list(found)), query["limit"], key=lambda o: o["id"])


@blp.route("/coupons/offers/<int:offer_id>")
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@blp.response(200, OfferSchema)
def get_offer(offer_id: int) -> Any:
    """Get an offer with its current terms and counters."""
    return _offer_view(offers.get_offer(offer_id))


@blp.route("/coupons/offers/<int:offer_id>", methods=["PATCH"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@write_endpoint()
@blp.arguments(OfferUpdateSchema)
@blp.response(200, OfferSchema)
def update_offer(changes: dict[str, Any], offer_id: int) -> Any:
    """Change an offer. Changing any term creates a new version; earlier redemptions keep
    the version they were redeemed under."""
    offer = offers.update_offer(offer_id, changes, now=utcnow(), actor=current_caller().actor)
    return _offer_view(offer)


@blp.route("/coupons/offers/<int:offer_id>/versions")
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@blp.arguments(PageQuery, location="query")
@blp.response(200, page_schema(OfferVersionSchema))
def offer_versions(query: dict[str, Any], offer_id: int) -> Any:
    """List an offer's versions, first first: the terms each redemption was made under."""
    offers.get_offer(offer_id)
    after = int_cursor(query["cursor"])
    select = (
        db.select(CouponOfferVersion)
        .where(CouponOfferVersion.offer_id == offer_id)
        .order_by(CouponOfferVersion.version)
        .limit(query["limit"] + 1)
    )
    if after is not None:
        select = select.where(CouponOfferVersion.version > after)
    versions = [
        {
            "version": v.version,
            "terms": offers.present_terms(v.terms),  # in the units sent (percent: 15)
            "created_at": v.created_at,
            "created_by": v.created_by,
        }
        for v in db.session.scalars(select).all()
    ]
    return page(versions, query["limit"], key=lambda v: v["version"])


@blp.route("/coupons/offers/<int:offer_id>/stats")
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@blp.response(200, OfferStatsSchema)
def offer_stats(offer_id: int) -> Any:
    """Codes, uses, redemptions and discount by status and channel."""
    offers.get_offer(offer_id)
    return offers.offer_stats(offer_id)


# --- codes (admin) ------------------------------------------------------------------------------


@blp.route("/coupons/offers/<int:offer_id>/batches", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@write_endpoint()
@blp.arguments(GenerateSchema)
@blp.response(201, BatchSchema)
@blp.alt_response(
    202,
    schema=BatchSchema,
    description="More than 200,000 codes: the batch is `running`, a job makes them; "
    "GET /v1/coupons/batches/{batch_id} until `done`",
)
def generate_batch(data: dict[str, Any], offer_id: int) -> Any:
    """Generate unique random codes (>= 60 bits each); download them as CSV afterwards.

    Up to 50,000,000 in one batch, the same limit as `omniloyal coupons generate`. Up to
    200,000 are made in this request (201, `done`); a larger batch is made in the
    background, a chunk per transaction (202, `running`, `created_count` growing): read it
    with GET /v1/coupons/batches/{batch_id} until it is `done` (or `failed`, with `error`;
    the codes made so far stay), then download the CSV."""
    format_and_uses = {
        "prefix": data["prefix"],
        "suffix": data["suffix"],
        "pattern": data["pattern"],
        "length": data["length"],
        "max_uses": data["max_uses"],
        "campaign_id": data["campaign_id"],
    }
    actor, now = current_caller().actor, utcnow()
    if data["count"] <= MAX_BATCH_AT_ONCE:
        return offers.generate_codes(
            offer_id, data["count"], now=now, actor=actor, **format_and_uses
        )
    batch, _ = offers.start_code_batch(
        offer_id,
        data["count"],
        now=now,
        actor=actor,
        request_key=f"api:{uuid.uuid4().hex}",  # a retry is the Idempotency-Key's replay
        **format_and_uses,
    )

    @after_this_request
    def start_the_job(response: Response) -> Response:
        # After write_endpoint's commit, so the job finds the batch; a lost enqueue is
        # picked up again by resume-code-batches.
        if response.status_code == 202 and REPLAY_HEADER not in response.headers:
            from loyalty.coupons.jobs import generate_code_batch

            generate_code_batch.enqueue(response.get_json()["id"])
        return response

    return batch, 202


@blp.route("/coupons/offers/<int:offer_id>/imports", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@write_endpoint()
@blp.arguments(ImportSchema)
@blp.response(201, ImportResultSchema)
def import_batch(data: dict[str, Any], offer_id: int) -> Any:
    """Load codes generated elsewhere; reports malformed codes and codes that exist."""
    batch, invalid, duplicates = offers.import_codes(
        offer_id,
        data["codes"],
        max_uses=data["max_uses"],
        now=utcnow(),
        actor=current_caller().actor,
    )
    return {"batch": batch, "invalid": invalid, "duplicates": duplicates}


@blp.route("/coupons/offers/<int:offer_id>/shared-codes", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@write_endpoint()
@blp.arguments(SharedCodeCreateSchema)
@blp.response(201, CodeSchema)
def create_shared_code(data: dict[str, Any], offer_id: int) -> Any:
    """A public code such as SPRING25 with its own use limit (none: unlimited)."""
    return offers.create_shared_code(
        offer_id,
        data["code"],
        max_uses=data["max_uses"],
        now=utcnow(),
        actor=current_caller().actor,
    )


@blp.route("/coupons/offers/<int:offer_id>/issue", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@write_endpoint()
@blp.arguments(IssueSchema)
@blp.response(201, IssuedSchema)
def issue(data: dict[str, Any], offer_id: int) -> Any:
    """Issue a new single-use coupon of the offer to each member (up to 10,000 per call)."""
    coupons = wallet.issue_to_members(
        offer_id,
        data["member_ids"],
        now=utcnow(),
        actor=current_caller().actor,
        source_type=data["source_type"],
        source_ref=data["source_ref"],
        campaign_id=data["campaign_id"],
    )
    return {"items": coupons}


@blp.route("/coupons/batches/<int:batch_id>")
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@blp.response(200, BatchSchema)
def get_batch(batch_id: int) -> Any:
    """Get a code batch: how many codes were asked for and made."""
    return offers.get_batch(batch_id)


@blp.route("/coupons/batches/<int:batch_id>/codes.csv")
@blp.doc(security=API_KEY, responses={"200": {"description": "text/csv of the batch's codes"}})
@requires(scopes.COUPONS_ADMIN)
def export_batch(batch_id: int) -> Any:
    """The batch's codes as CSV (code, status, uses, max_uses, member_id, expires_at)."""
    offers.get_batch(batch_id)
    return Response(
        stream_with_context(offers.export_batch_csv(batch_id)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="coupon-batch-{batch_id}.csv"'},
    )


@blp.route("/coupons/codes/<int:code_id>/void", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@write_endpoint(key_required=False)
@blp.response(200, CodeSchema)
def void_code(code_id: int) -> Any:
    """Withdraw a code at once (redemptions already made stay)."""
    return offers.void_code(code_id, now=utcnow())


@blp.route("/coupons/codes/<int:code_id>/return", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@write_endpoint()
@blp.response(200, CodeSchema)
def return_code(code_id: int) -> Any:
    """Support: take back an unused reward coupon and refund its points (once)."""
    return wallet.return_reward_coupon(
        code_id, member_id=None, now=utcnow(), actor=current_caller().actor
    )


@blp.route("/members/<member:member_id>/coupons")
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@blp.arguments(WalletQuery, location="query")
@blp.response(200, WalletSchema)
def member_coupons(query: dict[str, Any], member_id: int) -> Any:
    """Support's view of a member's wallet."""
    member = get_member(member_id)
    return _wallet(member.id, member.timezone, query)


# --- rewards catalogue (admin) ------------------------------------------------------------------


@blp.route("/coupons/rewards", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@write_endpoint()
@blp.arguments(RewardCreateSchema)
@blp.response(201, RewardSchema)
def create_reward(data: dict[str, Any]) -> Any:
    """Add a reward members can buy with points (a coupon of `offer_id`)."""
    return wallet.create_reward(data, now=utcnow())


@blp.route("/coupons/rewards")
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@blp.arguments(PageQuery, location="query")
@blp.response(200, page_schema(RewardSchema))
def list_rewards(query: dict[str, Any]) -> Any:
    """List the rewards catalogue, available or not, by id."""
    rewards = wallet.list_rewards(only_available=False)
    return page_of(rewards, cursor=query["cursor"], limit=query["limit"], key=lambda r: r.id)


@blp.route("/coupons/rewards/<int:reward_id>", methods=["PATCH"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_ADMIN)
@write_endpoint()
@blp.arguments(RewardUpdateSchema)
@blp.response(200, RewardSchema)
def update_reward(changes: dict[str, Any], reward_id: int) -> Any:
    """Change a reward's name, cost, stock or availability."""
    return wallet.update_reward(reward_id, changes)


# --- validation and redemption (POS, web shop) --------------------------------------------------


@blp.route("/coupons/validate", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_REDEEM)
@blp.arguments(ValidateSchema)
@blp.response(200, ValidationResultSchema)
def validate_codes(data: dict[str, Any]) -> Any:
    """Say for each code whether it applies to the basket, the discount per line, and
    machine-readable reasons when it doesn't. Changes nothing."""
    caller = current_caller()
    store_id = _store_for(caller, data)
    subjects = _lockout_subjects(caller)
    abuse.ensure_not_locked(subjects)
    evaluation = operations.evaluate(
        data["codes"],
        basket_from(data, store_id),
        member_id=_member_id(data["member_id"]),
        now=utcnow(),
    )
    _record_guesses(evaluation, subjects)
    return evaluation.as_dict()


@blp.route("/coupons/redeem", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_REDEEM)
@write_endpoint()
@blp.arguments(RedeemSchema)
@blp.response(201, CheckoutSchema)
def redeem(data: dict[str, Any]) -> Any:
    """Redeem codes for an order, all or none, never beyond any limit (see module doc)."""
    return _redeem_or_hold(data, hold_seconds=None)


@blp.route("/coupons/holds", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_REDEEM)
@write_endpoint()
@blp.arguments(CouponHoldRequestSchema)
@blp.response(201, CheckoutSchema)
def hold(data: dict[str, Any]) -> Any:
    """Reserve codes for a checkout (TTL: ttl_seconds or OMNILOYAL_HOLD_TTL); capture or
    release with the returned checkout_ref. Expired holds release themselves."""
    return _redeem_or_hold(data, hold_seconds=_hold_ttl(data["ttl_seconds"]))


def _redeem_or_hold(data: dict[str, Any], *, hold_seconds: int | None) -> Any:
    """Redeem now (hold_seconds None) or reserve; failed guesses count towards a lockout."""
    caller = current_caller()
    store_id = _store_for(caller, data)
    with abuse.guarded(_lockout_subjects(caller)):
        checkout = operations.redeem_codes(
            codes=data["codes"],
            basket=basket_from(data, store_id),
            member_id=_member_id(data["member_id"]),
            client_id=caller.client_id,
            order_ref=data["order_ref"],
            now=utcnow(),
            actor=caller.actor,
            hold_seconds=hold_seconds,
            metadata=data["metadata"],
        )
    if checkout.replayed:  # the same codes for the same order_ref: the first redemptions
        return replayed(_checkout_view(checkout), 201)
    return _checkout_view(checkout)


@blp.route("/coupons/holds/<checkout_ref>/capture", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_REDEEM)
@write_endpoint()
@blp.arguments(CouponCaptureSchema)
@blp.response(200, CheckoutSchema)
def capture(data: dict[str, Any], checkout_ref: str) -> Any:
    """Turn the held codes into redemptions for the order."""
    _own_checkout(checkout_ref)
    checkout = operations.capture_hold(
        checkout_ref, order_ref=data["order_ref"], now=utcnow(), actor=current_caller().actor
    )
    if checkout.replayed:  # captured before for this order: the same redemptions
        return replayed(_checkout_view(checkout), 200)
    return _checkout_view(checkout)


@blp.route("/coupons/holds/<checkout_ref>/release", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_REDEEM)
@write_endpoint()
@blp.response(200, CheckoutSchema)
def release(checkout_ref: str) -> Any:
    """Give the held codes back (a no-op when already released or expired)."""
    _own_checkout(checkout_ref)
    return _checkout_view(operations.release_hold(checkout_ref, now=utcnow()))


@blp.route("/coupons/redemptions/<int:redemption_id>")
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_REDEEM)
@blp.response(200, RedemptionSchema)
def get_redemption(redemption_id: int) -> Any:
    """Get a redemption (this key's own, or its store's)."""
    return _own_redemption(redemption_id)


@blp.route("/coupons/redemptions/<int:redemption_id>/rollback", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_REDEEM)
@write_endpoint()
@blp.arguments(RollbackRequestSchema)
@blp.response(200, RedemptionSchema)
def rollback(data: dict[str, Any], redemption_id: int) -> Any:
    """Refund or cancellation of a sale outside Omniloyal's orders: restore the use and
    the budget, exactly once (a second rollback changes nothing and answers the same).

    A redemption made by `POST /v1/orders` belongs to that order: it is rolled back only by
    the order's refund or cancellation (409 `belongs_to_order` here), so the order's
    discount and the code's use can't come apart."""
    redemption = _own_redemption(redemption_id)
    return operations.rollback_redemption(
        redemption.id, now=utcnow(), actor=current_caller().actor, reason=data["reason"]
    )


@blp.route("/coupons/rollbacks", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.COUPONS_REDEEM)
@write_endpoint()
@blp.arguments(RollbacksRequestSchema)
@blp.response(200, RollbackResultSchema)
def rollback_together(data: dict[str, Any]) -> Any:
    """Roll back a checkout's (`checkout_ref`) or an order's (`order_ref`) redemptions
    together, all or none, with a `reason` stored on each.

    Idempotent: calling again rolls back nothing and answers the same redemptions with
    `Idempotent-Replayed: true`. Redemptions made by `POST /v1/orders` are rolled back by
    the order's refund or cancellation (409 `belongs_to_order`); held ones by releasing
    the hold (409 `held`)."""
    found = operations.redemptions_by_reference(
        checkout_ref=data["checkout_ref"], order_ref=data["order_ref"]
    )
    if not _visible(found, current_caller()):
        reference = data["checkout_ref"] or data["order_ref"]
        raise NotFound(f"no redemptions for {reference!r}")
    result = operations.rollback_redemptions(
        [r.id for r in found], reason=data["reason"], now=utcnow(), actor=current_caller().actor
    )
    view = {
        "checkout_ref": data["checkout_ref"],
        "order_ref": data["order_ref"],
        "reason": data["reason"],
        "rolled_back": result.rolled_back_now,
        "redemptions": result.redemptions,
    }
    if result.replayed:
        view["reason"] = result.redemptions[0].rollback_reason
        return replayed(view, 200)
    return view


# --- member app ---------------------------------------------------------------------------------


def _wallet(member_id: int, timezone: str, query: dict[str, Any]) -> dict[str, Any]:
    """A page of the member's wallet (by coupon id), optionally of one status."""
    coupons = wallet.member_wallet(member_id, now=utcnow())
    for coupon in coupons:
        expires = coupon["expires_at"]
        coupon["local_expires_at"] = local(expires, timezone).isoformat() if expires else None
    status = query["status"]
    chosen = [c for c in coupons if status is None or c["status"] == status]
    return page_of(chosen, cursor=query["cursor"], limit=query["limit"], key=lambda c: c["id"])


@blp.route("/me/coupons")
@blp.doc(security=MEMBER)
@requires_member
@blp.arguments(WalletQuery, location="query")
@blp.response(200, WalletSchema)
def my_coupons(query: dict[str, Any]) -> Any:
    """The member's coupons: status (available, held, redeemed, expired), expiry in their
    timezone, and where each can be used."""
    member = get_member(current_caller().member_id)  # type: ignore[arg-type]
    return _wallet(member.id, member.timezone, query)


@blp.route("/me/coupons/validate", methods=["POST"])
@blp.doc(security=MEMBER)
@requires_member
@blp.arguments(MemberValidateSchema)
@blp.response(200, ValidationResultSchema)
def my_validate(data: dict[str, Any]) -> Any:
    """Check codes against a basket in the app; another member's code reads as unknown."""
    member = get_member(current_caller().member_id)  # type: ignore[arg-type]
    if Channel(data["channel"]).needs_store and data["store_id"] is None:
        raise InvalidInput(f"a {data['channel']} basket needs a store_id", field="store_id")
    subjects = _lockout_subjects(current_caller())
    abuse.ensure_not_locked(subjects)
    evaluation = operations.evaluate(
        data["codes"],
        basket_from(data, data["store_id"]),
        member_id=member.id,
        now=utcnow(),
        viewer_member_id=member.id,
    )
    _record_guesses(evaluation, subjects)
    return evaluation.as_dict()


@blp.route("/me/rewards")
@blp.doc(security=MEMBER)
@requires_member
@blp.arguments(PageQuery, location="query")
@blp.response(200, page_schema(RewardSchema))
def my_rewards(query: dict[str, Any]) -> Any:
    """List the rewards the member can buy with points now."""
    rewards = wallet.list_rewards(only_available=True)
    return page_of(rewards, cursor=query["cursor"], limit=query["limit"], key=lambda r: r.id)


@blp.route("/me/rewards/<int:reward_id>/redeem", methods=["POST"])
@blp.doc(security=MEMBER)
@requires_member
@write_endpoint()
@blp.response(201, CodeSchema)
def redeem_reward(reward_id: int) -> Any:
    """Buy a reward: its points are burned and its coupon lands in the wallet, together."""
    member = get_member(current_caller().member_id)  # type: ignore[arg-type]
    return wallet.buy_reward(
        reward_id, member_id=member.id, now=utcnow(), actor=current_caller().actor
    )


@blp.route("/me/coupons/<int:code_id>/return", methods=["POST"])
@blp.doc(security=MEMBER)
@requires_member
@write_endpoint()
@blp.response(200, CodeSchema)
def return_my_coupon(code_id: int) -> Any:
    """Give back an unused reward coupon; its points come back once."""
    member = get_member(current_caller().member_id)  # type: ignore[arg-type]
    return wallet.return_reward_coupon(
        code_id, member_id=member.id, now=utcnow(), actor=current_caller().actor
    )


def _register_member_hooks() -> None:
    """Coupons follow a member merge, appear in the member's data export and are accounted
    for in an erasure (loyalty.coupons.privacy)."""
    from loyalty.coupons.privacy import erase_member_coupons
    from loyalty.members import merge, privacy

    merge.register_merge_step(wallet.merge_member_coupons)
    privacy.register_export_section("coupons", wallet.export_member_coupons)
    privacy.register_erase_step("coupons", erase_member_coupons)


_register_member_hooks()
