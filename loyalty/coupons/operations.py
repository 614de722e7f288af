"""Coupon redemption: validate, redeem, hold/capture/release, rollback, orders integration.

The redeem path is lean on purpose (POS p99 target): one query loads the codes with their
offer and current terms; then, per code, one statement takes a use with a conditional
UPDATE and inserts the redemption (on PostgreSQL the UPDATE is a CTE of the INSERT);
offers with a total cap or budget take theirs with one conditional UPDATE on the offer
row, offers with a per-member limit with one conditional upsert; no table locks.
Rows are locked in the service's one order (docs/architecture.md, "Lock order"): the
member first (a merge or a refund locks the member before its coupon rows), then codes by
id, offers by id, member counters by (offer, member), so no two paths can deadlock.

Offers, batches, issuing and rewards live in `offers.py` and `wallet.py`;
`generate_codes` is re-exported here.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from loyalty import outbox
from loyalty.basket import Basket, OrderDiscounts
from loyalty.batches import BatchCursor
from loyalty.coupons.codes import is_well_formed, normalise
from loyalty.coupons.discounts import (
    CouponDiscount,
    OfferKind,
    OfferTerms,
    compute_discounts,
    eligible_spend,
    line_is_eligible,
)
from loyalty.coupons.models import (
    ACTIVE_REDEMPTION_STATUSES,
    COUNTER_STRIPES,
    CodeStatus,
    CouponCode,
    CouponMemberUse,
    CouponOffer,
    CouponOfferCounter,
    CouponOfferVersion,
    CouponRedemption,
    OfferStatus,
    RedemptionStatus,
)
from loyalty.coupons.offers import generate_codes  # noqa: F401  (the operation lives there)
from loyalty.db import (
    any_of_parameter,
    as_persistent,
    column_values,
    constant,
    db,
    insert_row,
    is_postgres,
    json_rows,
    upsert_insert,
)
from loyalty.errors import Conflict, InvalidInput, NotFound
from loyalty.members.resolution import current_member_id
from loyalty.stores.models import Store

MAX_CODES_PER_CHECKOUT = 10


# --- errors ---------------------------------------------------------------------------------


class CouponNotApplicable(InvalidInput):
    """A code doesn't apply to this basket, member, store or time (422).

    `reason` is the first code's first machine-readable reason; `reasons` maps every
    refused code to its reasons (see `Reason`)."""

    slug, title = "coupon-not-applicable", "Coupon does not apply"


class CouponUnavailable(Conflict):
    """A code would apply but a limit is used up (code, offer, member, budget) or it is
    held for another checkout (409)."""

    slug, title = "coupon-unavailable", "Coupon no longer available"


class Reason:
    """Machine-readable reasons a code doesn't apply."""

    UNKNOWN = "unknown_code"  # also another member's code, when a member asks
    INACTIVE = "inactive"  # code voided/returned, or offer paused/ended
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_CHANNEL = "wrong_channel"
    WRONG_STORE = "wrong_store"
    WRONG_CURRENCY = "wrong_currency"
    MIN_SPEND = "min_spend_not_met"
    NO_ELIGIBLE_ITEMS = "no_eligible_items"
    FREE_ITEM_MISSING = "free_item_not_in_basket"
    LIMIT = "limit_reached"  # the code's or the offer's uses are used up (or held)
    MEMBER_LIMIT = "member_limit_reached"
    MEMBER_REQUIRED = "member_required"  # a per-member limit needs a known member
    BUDGET = "budget_exhausted"
    OTHER_MEMBER = "belongs_to_another_member"
    DUPLICATE = "duplicate_code"
    NOT_STACKABLE = "not_stackable_with:"  # + the code it clashes with
    SAME_OFFER = "same_offer_as:"  # + the other code of the same offer


# Reasons that say "this code can't be had now" (409) rather than "it doesn't fit" (422).
UNAVAILABLE = {Reason.LIMIT, Reason.MEMBER_LIMIT, Reason.BUDGET}
# Reasons a guesser gets: these count toward the failure lockout.
GUESS_REASONS = {Reason.UNKNOWN, Reason.OTHER_MEMBER}


# --- loading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A code as stored, with its offer's enforced caps and current terms."""

    code_id: int
    code: str
    code_status: str
    max_uses: int | None
    uses: int
    owner_id: int | None
    expires_at: datetime | None
    source_type: str | None
    source_ref: str | None
    campaign_id: int | None
    offer_id: int
    offer_name: str
    offer_status: str
    version: int
    version_id: int
    max_redemptions: int | None
    budget_minor: int | None
    per_member_limit: int | None
    redemptions_count: int
    discount_spent_minor: int
    terms: OfferTerms
    existing_redemption_id: int | None  # an active redemption of this code for the order
    store_ids: list[str] | None = None  # this code only at these stores (e.g. nearest ones)

    @property
    def tracks_totals(self) -> bool:
        return self.max_redemptions is not None or self.budget_minor is not None


def _load(codes: Sequence[str], order_ref: str | None) -> dict[str, Candidate]:
    params: dict[str, Any] = {"codes": list(codes)}
    if order_ref is not None:
        params["order_ref"] = order_ref
    query = _load_query(order_ref is not None, db.engine.dialect.name)
    rows = db.session.execute(query, params).all()
    found = {}
    for row in rows:
        values = list(row)
        terms = OfferTerms.from_json(values[20])
        found[row[1]] = Candidate(*values[:20], terms, values[21], values[22])  # type: ignore[misc]
    return found


@cache
def _load_query(for_order: bool, dialect: str) -> sa.Select[Any]:
    """The codes with their offer and current terms (and, `for_order`, an active redemption
    of the code for that order). Built once: on the hot path only the parameters change."""
    # Table columns, not ORM attributes: a Core SELECT skips the ORM's result handling.
    code, offer, version = (m.__table__.c for m in (CouponCode, CouponOffer, CouponOfferVersion))
    redemption = CouponRedemption.__table__.c
    query = sa.select(
        code.id,
        code.code,
        code.status,
        code.max_uses,
        code.uses,
        code.member_id,
        code.expires_at,
        code.source_type,
        code.source_ref,
        code.campaign_id,
        offer.id,
        offer.name,
        offer.status,
        offer.version,
        version.id,
        offer.max_redemptions,
        offer.budget_minor,
        offer.per_member_limit,
        offer.redemptions_count,
        offer.discount_spent_minor,
        version.terms,
    )
    query = query.add_columns(redemption.id if for_order else sa.null(), code.store_ids)
    same_version = sa.and_(version.offer_id == offer.id, version.version == offer.version)
    query = query.join(CouponOffer.__table__, offer.id == code.offer_id).join(
        CouponOfferVersion.__table__, same_version
    )
    if for_order:
        query = query.outerjoin(
            CouponRedemption.__table__,
            sa.and_(
                redemption.code_id == code.id,
                redemption.order_ref == sa.bindparam("order_ref"),
                # Literal, so even a generic plan can use uq_coupon_redemptions_code_order.
                redemption.status.in_([constant(s) for s in ACTIVE_REDEMPTION_STATUSES]),
            ),
        )
    return query.where(any_of_parameter(code.code, "codes", dialect))


# --- evaluation (changes nothing) -----------------------------------------------------------


@dataclass
class CodeResult:
    code: str  # normalised
    candidate: Candidate | None = None
    reasons: list[str] = field(default_factory=list)
    discount: CouponDiscount | None = None
    member_id: int | None = None  # whose use it is: the given member or the code's owner

    @property
    def applies(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, Any]:
        candidate = self.candidate if self.applies or Reason.UNKNOWN not in self.reasons else None
        discount = self.discount if self.applies else None
        return {
            "code": self.code,
            "applies": self.applies,
            "reasons": self.reasons,
            "discount_minor": discount.total_minor if discount else 0,
            "line_discounts": _lines(discount.line_discounts if discount else {}),
            "bonus_points": discount.bonus_points if discount else 0,
            "points_multiplier_pct": discount.points_multiplier_pct if discount else 100,
            "offer": _offer_summary(candidate) if candidate else None,
        }


def _lines(line_discounts: dict[int, int]) -> list[dict[str, int]]:
    return [{"line": i, "discount_minor": d} for i, d in sorted(line_discounts.items())]


def _offer_summary(candidate: Candidate) -> dict[str, Any]:
    return {
        "id": candidate.offer_id,
        "name": candidate.offer_name,
        "version": candidate.version,
        "kind": candidate.terms.kind.value,
    }


@dataclass
class Evaluation:
    results: list[CodeResult]

    @property
    def applied(self) -> list[CodeResult]:
        return [r for r in self.results if r.applies]

    def totals(self) -> dict[str, Any]:
        lines: dict[int, int] = {}
        bonus, multiplier = 0, 100
        for result in self.applied:
            assert result.discount is not None
            for index, amount in result.discount.line_discounts.items():
                lines[index] = lines.get(index, 0) + amount
            bonus += result.discount.bonus_points
            multiplier = max(multiplier, result.discount.points_multiplier_pct)
        return {
            "total_discount_minor": sum(lines.values()),
            "line_discounts": lines,
            "bonus_points": bonus,
            "points_multiplier_pct": multiplier,
        }

    def as_dict(self) -> dict[str, Any]:
        totals = self.totals()
        return {
            "results": [r.as_dict() for r in self.results],
            "total_discount_minor": totals["total_discount_minor"],
            "line_discounts": _lines(totals["line_discounts"]),
            "bonus_points": totals["bonus_points"],
            "points_multiplier_pct": totals["points_multiplier_pct"],
        }


def _store_region(store_id: str | None) -> str | None:
    if store_id is None:
        return None
    store = db.session.get(Store, store_id)
    if store is None:
        raise InvalidInput(f"no store {store_id!r}", field="store_id")
    return store.region


def evaluate(
    codes: Sequence[str],
    basket: Basket,
    *,
    member_id: int | None,
    now: datetime,
    viewer_member_id: int | None = None,
    order_ref: str | None = None,
) -> Evaluation:
    """Say for each code whether it applies to `basket` and what it gives. Writes nothing.

    `viewer_member_id` is set when a member asks: another member's code then looks exactly
    like an unknown one.
    """
    if not codes:
        raise InvalidInput("give at least one code", field="codes")
    if len(codes) > MAX_CODES_PER_CHECKOUT:
        raise InvalidInput(f"at most {MAX_CODES_PER_CHECKOUT} codes at once", field="codes")
    normalised = [normalise(c) for c in codes]
    loaded = _load([c for c in normalised if is_well_formed(c)], order_ref)
    needs_region = any(c.terms.regions for c in loaded.values())
    region = _store_region(basket.store_id) if needs_region else None
    results: list[CodeResult] = []
    seen: set[str] = set()
    for code in normalised:
        result = CodeResult(code=code, candidate=loaded.get(code))
        if code in seen:
            result.reasons.append(Reason.DUPLICATE)
        else:
            _check(result, basket, member_id, viewer_member_id, region, now)
        seen.add(code)
        results.append(result)
    _check_member_limits([r for r in results if r.applies], now)
    _stack_and_price(results, basket)
    return Evaluation(results)


def _check(
    result: CodeResult,
    basket: Basket,
    member_id: int | None,
    viewer_member_id: int | None,
    region: str | None,
    now: datetime,
) -> None:
    c = result.candidate
    reasons = result.reasons
    foreign = c is not None and c.owner_id is not None and c.owner_id != (member_id or c.owner_id)
    if c is None or (viewer_member_id is not None and foreign):
        reasons.append(Reason.UNKNOWN)
        return
    if foreign:
        reasons.append(Reason.OTHER_MEMBER)
        return
    if c.existing_redemption_id is not None:
        return  # already redeemed for this very order: a replay, not a new use
    result.member_id = member_id or c.owner_id
    terms = c.terms
    if c.code_status != CodeStatus.ACTIVE or c.offer_status != OfferStatus.ACTIVE:
        reasons.append(Reason.INACTIVE)
    if terms.valid_from is not None and now < terms.valid_from:
        reasons.append(Reason.NOT_YET_VALID)
    if (terms.valid_until is not None and now >= terms.valid_until) or (
        c.expires_at is not None and now >= c.expires_at
    ):
        reasons.append(Reason.EXPIRED)
    if terms.channels and basket.channel not in terms.channels:
        reasons.append(Reason.WRONG_CHANNEL)
    if (
        (terms.store_ids or terms.regions)
        and not (
            (basket.store_id is not None and basket.store_id in terms.store_ids)
            or (region is not None and region in terms.regions)
        )
    ) or (c.store_ids and basket.store_id not in c.store_ids):
        reasons.append(Reason.WRONG_STORE)
    if terms.currency is not None and terms.currency != basket.currency:
        reasons.append(Reason.WRONG_CURRENCY)
    elif terms.min_spend_minor and eligible_spend(terms, basket.lines) < terms.min_spend_minor:
        reasons.append(Reason.MIN_SPEND)
    if terms.kind == OfferKind.FREE_ITEM:
        if not any(
            line.sku == terms.free_sku and line_is_eligible(terms, line) for line in basket.lines
        ):
            reasons.append(Reason.FREE_ITEM_MISSING)
    elif terms.gives_money and not any(line_is_eligible(terms, ln) for ln in basket.lines):
        reasons.append(Reason.NO_ELIGIBLE_ITEMS)
    if (c.max_uses is not None and c.uses >= c.max_uses) or (
        c.max_redemptions is not None and c.redemptions_count >= c.max_redemptions
    ):
        reasons.append(Reason.LIMIT)
    if c.budget_minor is not None and c.discount_spent_minor >= c.budget_minor:
        reasons.append(Reason.BUDGET)
    if c.per_member_limit is not None and result.member_id is None:
        reasons.append(Reason.MEMBER_REQUIRED)


def _check_member_limits(results: list[CodeResult], now: datetime) -> None:
    limited = [
        r
        for r in results
        if r.candidate is not None
        and r.candidate.per_member_limit is not None
        and r.member_id is not None
        and r.candidate.existing_redemption_id is None
    ]
    if not limited:
        return
    keys = {(r.candidate.offer_id, r.member_id) for r in limited}  # type: ignore[union-attr]
    rows = db.session.execute(
        sa.select(CouponMemberUse.offer_id, CouponMemberUse.member_id, CouponMemberUse.uses).where(
            sa.tuple_(CouponMemberUse.offer_id, CouponMemberUse.member_id).in_(list(keys))
        )
    ).all()
    uses = {(o, m): u for o, m, u in rows}
    for r in limited:
        assert r.candidate is not None and r.candidate.per_member_limit is not None
        if uses.get((r.candidate.offer_id, r.member_id), 0) >= r.candidate.per_member_limit:
            r.reasons.append(Reason.MEMBER_LIMIT)


def _stack_and_price(results: list[CodeResult], basket: Basket) -> None:
    """Accept codes in the order given while they combine; price them; drop any whose
    discount would overrun its offer's budget, then price the rest again."""
    accepted: list[CodeResult] = []
    for result in results:
        if not result.applies:
            continue
        terms = result.candidate.terms  # type: ignore[union-attr]
        for other in accepted:
            other_candidate = other.candidate
            assert other_candidate is not None
            if other_candidate.offer_id == result.candidate.offer_id:  # type: ignore[union-attr]
                result.reasons.append(Reason.SAME_OFFER + other.code)
                break
            if not terms.combines_with(other_candidate.terms):
                result.reasons.append(Reason.NOT_STACKABLE + other.code)
                break
        else:
            accepted.append(result)
    while accepted:
        priced = compute_discounts(
            basket.lines,
            [(r.code, r.candidate.terms) for r in accepted],  # type: ignore[union-attr]
        )
        over_budget = []
        for result in accepted:
            result.discount = priced[result.code]
            c = result.candidate
            assert c is not None
            budget_left = (
                None if c.budget_minor is None else c.budget_minor - c.discount_spent_minor
            )
            if budget_left is not None and result.discount.total_minor > budget_left:
                over_budget.append(result)
        if not over_budget:
            return
        for result in over_budget:
            result.reasons.append(Reason.BUDGET)
            result.discount = None
        accepted = [r for r in accepted if r.applies]


def refusal(evaluation: Evaluation) -> CouponNotApplicable | CouponUnavailable | None:
    """The error to raise when any code doesn't apply (None when all apply)."""
    refused = [r for r in evaluation.results if not r.applies]
    if not refused:
        return None
    reasons = {r.code: r.reasons for r in refused}
    first = refused[0].reasons[0]
    unavailable = all(set(r.reasons) <= UNAVAILABLE for r in refused)
    cls = CouponUnavailable if unavailable else CouponNotApplicable
    detail = "; ".join(f"{code}: {', '.join(rs)}" for code, rs in reasons.items())
    return cls(detail, reason=first, reasons=reasons)


# --- redeeming and holding ------------------------------------------------------------------


@dataclass
class Checkout:
    """The redemptions one call created (or found, on a replay)."""

    checkout_ref: str
    status: str
    redemptions: list[CouponRedemption]
    replayed: bool = False

    def totals(self) -> OrderDiscounts:
        lines: dict[int, int] = {}
        bonus, multiplier = 0, 100
        for r in self.redemptions:
            for index, amount in r.line_discounts.items():
                lines[int(index)] = lines.get(int(index), 0) + amount
            bonus += r.bonus_points
            multiplier = max(multiplier, r.points_multiplier_pct)
        return OrderDiscounts(
            total_discount_minor=sum(lines.values()),
            line_discounts=lines,
            bonus_points=bonus,
            points_multiplier_pct=multiplier,
            redemptions=tuple(
                {"code_id": r.code_id, "redemption_id": r.id, "discount_minor": r.discount_minor}
                for r in self.redemptions
            ),
        )


def redeem_codes(
    *,
    codes: Sequence[str],
    basket: Basket,
    member_id: int | None,
    client_id: int | None,
    order_ref: str | None,
    now: datetime,
    actor: str,
    order_id: int | None = None,
    hold_seconds: int | None = None,
    member_locked: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Checkout:
    """Redeem (or, with `hold_seconds`, hold) every code for the basket, or none of them.

    Raises CouponNotApplicable (422) / CouponUnavailable (409) with machine-readable
    reasons. Redeeming the same codes again for the same `order_ref` returns the first
    redemptions (a retry after a lost response), without taking another use.
    The member is locked before any coupon row (`member_locked`: the caller did).
    """
    if member_id is not None and not member_locked:
        member_id = _lock_members([member_id])[0]
    evaluation = evaluate(codes, basket, member_id=member_id, now=now, order_ref=order_ref)
    replay = _replayed(evaluation)
    if replay is not None:
        return replay
    error = refusal(evaluation)
    if error is not None:
        raise error
    applied = evaluation.applied
    held = hold_seconds is not None
    status = RedemptionStatus.HELD if held else RedemptionStatus.REDEEMED
    checkout_ref = uuid.uuid4().hex

    def row(result: CodeResult) -> dict[str, Any]:
        c, d = result.candidate, result.discount
        assert c is not None and d is not None
        return {
            "code_id": c.code_id,
            "code": c.code,
            "offer_id": c.offer_id,
            "offer_version_id": c.version_id,
            "offer_version": c.version,
            "status": status.value,
            "checkout_ref": checkout_ref,
            "order_ref": order_ref,
            "order_id": order_id,
            "member_id": result.member_id,
            "client_id": client_id,
            "store_id": basket.store_id,
            "channel": basket.channel,
            "currency": basket.currency,
            "discount_minor": d.total_minor,
            "line_discounts": {str(i): v for i, v in d.line_discounts.items()},
            "bonus_points": d.bonus_points,
            "points_multiplier_pct": d.points_multiplier_pct,
            "counted_offer": c.tracks_totals,
            "counted_member": c.per_member_limit is not None and result.member_id is not None,
            "source_type": c.source_type,
            "source_ref": c.source_ref,
            "campaign_id": c.campaign_id,
            "expires_at": now + timedelta(seconds=hold_seconds) if held else None,  # type: ignore[operator]
            "created_at": now,
            "redeemed_at": None if held else now,
            "actor": actor,
            "closed_at": None,
            "rollback_reason": None,
            "extra": metadata,
        }

    redemptions = _take_uses_and_record(applied, row)
    _take_offer_totals(applied)
    _take_member_uses(applied)
    _emit_and_count("coupon.held" if held else "coupon.redeemed", redemptions, applied, now)
    return Checkout(checkout_ref, status.value, redemptions)


def _replayed(evaluation: Evaluation) -> Checkout | None:
    existing_ids = [
        r.candidate.existing_redemption_id
        for r in evaluation.results
        if r.candidate is not None and r.candidate.existing_redemption_id is not None
    ]
    if not existing_ids:
        return None
    if len(existing_ids) != len(evaluation.results):
        raise Conflict(
            "this order already has coupon redemptions for other codes; roll them back first",
            reason="order_has_other_redemptions",
        )
    found = {
        r.id: r
        for r in db.session.scalars(
            sa.select(CouponRedemption).where(CouponRedemption.id.in_(existing_ids))
        )
    }
    redemptions = [found[i] for i in existing_ids]  # the request's order, as the first answer
    return Checkout(redemptions[0].checkout_ref, redemptions[0].status, redemptions, True)


def _unavailable(result: CodeResult, reason: str) -> CouponUnavailable:
    return CouponUnavailable(
        f"{result.code}: {reason}", reason=reason, reasons={result.code: [reason]}
    )


def _take_uses_and_record(
    applied: list[CodeResult], row: Callable[[CodeResult], dict[str, Any]]
) -> list[CouponRedemption]:
    """Per code, in ascending code id (the lock order), take one use of the code and insert
    its redemption; CouponUnavailable when a code has no use left (the edge rolls back the
    codes before it). On PostgreSQL one statement per code: the use's conditional UPDATE is
    a CTE of the redemption's INSERT, which inserts nothing when no use was taken. Returns
    the redemptions in the order of `applied` (the request's)."""
    made: dict[int, CouponRedemption] = {}
    for result in sorted(applied, key=lambda r: r.candidate.code_id):  # type: ignore[union-attr]
        values = row(result)
        code_id = values["code_id"]
        new_id: int | None = None
        if is_postgres():
            parameters = {f"new_{k}": v for k, v in column_values(CouponRedemption, values).items()}
            parameters["code_id"] = code_id
            new_id = db.session.execute(_take_and_record_statement(), parameters).scalar()
        elif db.session.execute(_take_code_use_statement(), {"code_id": code_id}).rowcount == 1:
            new_id = insert_row(CouponRedemption, values)
        if new_id is None:
            raise _unavailable(result, Reason.LIMIT)
        made[code_id] = as_persistent(CouponRedemption, new_id, values)
    return [made[r.candidate.code_id] for r in applied]  # type: ignore[union-attr]


@cache
def _take_code_use_statement() -> sa.Update:
    """One use of an active code, only while it has uses left (built once)."""
    table = CouponCode.__table__
    return (
        sa.update(table)
        .where(
            table.c.id == sa.bindparam("code_id"),
            table.c.status == CodeStatus.ACTIVE.value,
            sa.or_(table.c.max_uses.is_(None), table.c.uses < table.c.max_uses),
        )
        .values(uses=table.c.uses + 1)
    )


@cache
def _take_and_record_statement() -> sa.Insert:
    """PostgreSQL: `WITH taken AS (the use's UPDATE ... RETURNING id) INSERT INTO
    coupon_redemptions SELECT ... FROM taken RETURNING id`: one round trip, and no row
    unless the use was taken (built once). The values' parameters are named `new_<column>`:
    a parameter named like a column of coupon_codes would also be SET by the UPDATE."""
    redemptions = CouponRedemption.__table__
    taken = _take_code_use_statement().returning(CouponCode.__table__.c.id).cte("taken")
    columns = [c.name for c in redemptions.c if c.name != "id"]
    values = sa.select(
        *(
            taken.c.id
            if name == "code_id"
            else sa.bindparam(f"new_{name}", type_=redemptions.c[name].type)
            for name in columns
        )
    ).select_from(taken)
    return (
        sa.insert(redemptions)
        .from_select(columns, values)
        .returning(redemptions.c.id)
        .add_cte(taken)
    )


def _count_uncapped(offer_id: int, redemptions: int, discount_minor: int) -> None:
    """Add to one stripe of an uncapped offer's counters (see CouponOfferCounter): one
    upsert on a row chosen at random, so concurrent redemptions rarely share a row."""
    db.session.execute(
        _count_uncapped_statement(db.engine.dialect.name),
        {
            "offer_id": offer_id,
            "stripe": random.randrange(COUNTER_STRIPES),
            "redemptions": redemptions,
            "discount_minor": discount_minor,
        },
    )


@cache
def _count_uncapped_statement(dialect: str) -> Any:
    """Built once per dialect (every redemption of an uncapped offer runs it)."""
    return _adding_to_counters(upsert_insert(CouponOfferCounter.__table__, dialect))


def _adding_to_counters(insert: Any) -> Any:
    """An INSERT of counter rows that adds to a stripe already there."""
    table = CouponOfferCounter.__table__
    return insert.on_conflict_do_update(
        index_elements=["offer_id", "stripe"],
        set_={
            "redemptions": table.c.redemptions + insert.excluded.redemptions,
            "discount_minor": table.c.discount_minor + insert.excluded.discount_minor,
        },
    )


def _emit_and_count(
    topic: str, redemptions: list[CouponRedemption], applied: list[CodeResult], now: datetime
) -> None:
    """The checkout's event, then one use on each uncapped offer's counter: last, since a
    counter row stays locked until the commit. On PostgreSQL the two are one statement
    (the event's INSERT with the counters' upsert, fed by one JSON parameter, as a CTE)."""
    uncapped = sorted(
        (r for r in applied if not r.candidate.tracks_totals),  # type: ignore[union-attr]
        key=lambda r: r.candidate.offer_id,  # type: ignore[union-attr]
    )
    event = outbox.event_parameters(
        topic, redemptions[0].member_id, _event_payload(redemptions), now
    )
    if not is_postgres():
        db.session.execute(outbox.event_insert(), event)
        for result in uncapped:
            _count_uncapped(result.candidate.offer_id, 1, result.discount.total_minor)  # type: ignore[union-attr]
        return
    counts = [
        {
            "offer_id": r.candidate.offer_id,  # type: ignore[union-attr]
            "stripe": random.randrange(COUNTER_STRIPES),
            "redemptions": 1,
            "discount_minor": r.discount.total_minor,  # type: ignore[union-attr]
        }
        for r in uncapped
    ]
    db.session.execute(_emit_and_count_statement(), {**event, "counts": counts})


@cache
def _emit_and_count_statement() -> sa.Insert:
    """PostgreSQL: `_emit_and_count` in one round trip (built once)."""
    table = CouponOfferCounter.__table__
    columns = ("offer_id", "stripe", "redemptions", "discount_minor")
    rows = json_rows("counts", {name: table.c[name].type for name in columns})
    insert = postgresql.insert(table).from_select(list(columns), sa.select(rows))
    return outbox.event_insert().add_cte(_adding_to_counters(insert).cte("counted"))


def offer_totals(offers: Sequence[CouponOffer]) -> dict[int, tuple[int, int]]:
    """offer id -> (redemptions_count, discount_spent_minor), held + redeemed: a capped
    offer's own columns, an uncapped one's counter stripes summed (one query for all)."""
    totals = {o.id: (o.redemptions_count, o.discount_spent_minor) for o in offers}
    uncapped = [o.id for o in offers if not o.tracks_totals]
    if uncapped:
        table = CouponOfferCounter.__table__
        for offer_id, count, spent in db.session.execute(
            sa.select(
                table.c.offer_id,
                sa.func.sum(table.c.redemptions),
                sa.func.sum(table.c.discount_minor),
            )
            .where(table.c.offer_id.in_(uncapped))
            .group_by(table.c.offer_id)
        ):
            totals[offer_id] = (int(count), int(spent))
    return totals


def _take_offer_totals(applied: list[CodeResult]) -> None:
    table = CouponOffer.__table__
    capped = [r for r in applied if r.candidate.tracks_totals]  # type: ignore[union-attr]
    for result in sorted(capped, key=lambda r: r.candidate.offer_id):  # type: ignore[union-attr]
        discount = result.discount.total_minor  # type: ignore[union-attr]
        taken = db.session.execute(
            sa.update(table)
            .where(
                table.c.id == result.candidate.offer_id,  # type: ignore[union-attr]
                sa.or_(
                    table.c.max_redemptions.is_(None),
                    table.c.redemptions_count < table.c.max_redemptions,
                ),
                sa.or_(
                    table.c.budget_minor.is_(None),
                    table.c.discount_spent_minor + discount <= table.c.budget_minor,
                ),
            )
            .values(
                redemptions_count=table.c.redemptions_count + 1,
                discount_spent_minor=table.c.discount_spent_minor + discount,
            )
        ).rowcount
        if taken != 1:
            offer = db.session.execute(
                sa.select(table.c.max_redemptions, table.c.redemptions_count).where(
                    table.c.id == result.candidate.offer_id  # type: ignore[union-attr]
                )
            ).one()
            at_limit = offer[0] is not None and offer[1] >= offer[0]
            raise _unavailable(result, Reason.LIMIT if at_limit else Reason.BUDGET)


def _take_member_uses(applied: list[CodeResult]) -> None:
    table = CouponMemberUse.__table__
    limited = [
        r
        for r in applied
        if r.candidate.per_member_limit is not None and r.member_id is not None  # type: ignore[union-attr]
    ]
    for result in sorted(limited, key=lambda r: (r.candidate.offer_id, r.member_id)):  # type: ignore[union-attr]
        limit = result.candidate.per_member_limit  # type: ignore[union-attr]
        statement = (
            upsert_insert(table)
            .values(
                offer_id=result.candidate.offer_id,
                member_id=result.member_id,  # type: ignore[union-attr]
                uses=1,
                max_uses=limit,
            )
            .on_conflict_do_update(
                index_elements=["offer_id", "member_id"],
                set_={"uses": table.c.uses + 1, "max_uses": limit},
                where=table.c.uses < limit,
            )
            .returning(table.c.uses)
        )
        if db.session.execute(statement).scalar() is None:
            raise _unavailable(result, Reason.MEMBER_LIMIT)


def _emit(topic: str, redemptions: list[CouponRedemption], now: datetime) -> None:
    outbox.emit(
        topic, member_id=redemptions[0].member_id, payload=_event_payload(redemptions), now=now
    )


def _event_payload(redemptions: list[CouponRedemption]) -> dict[str, Any]:
    first = redemptions[0]
    return {
        "checkout_ref": first.checkout_ref,
        "order_ref": first.order_ref,
        "order_id": first.order_id,
        "store_id": first.store_id,
        "channel": first.channel,
        "redemptions": [
            {
                "redemption_id": r.id,
                "offer_id": r.offer_id,
                "offer_version_id": r.offer_version_id,
                "discount_minor": r.discount_minor,
                "campaign_id": r.campaign_id,
                "source": {"type": r.source_type, "ref": r.source_ref},
            }
            for r in redemptions
        ],
    }


# --- closing: capture, release, rollback, expiry ----------------------------------------------


def _lock_members(member_ids: Sequence[int | None]) -> list[int]:
    """Lock the members (following merges) before any coupon row: the service's lock order
    (docs/architecture.md) puts members first, since merges and refunds lock the members
    and then their coupon rows. One statement (`lock_current_members`); returns the
    locked people's ids in the order given."""
    from loyalty.members.resolution import lock_current_members

    given = [m for m in member_ids if m is not None]
    locked = lock_current_members(given)
    return [locked[m].id for m in given]


def _redemption_members(condition: Any) -> list[int]:
    table = CouponRedemption.__table__
    return list(
        db.session.scalars(
            sa.select(table.c.member_id).where(condition, table.c.member_id.is_not(None)).distinct()
        )
    )


def _close(
    condition: Any,
    from_status: RedemptionStatus,
    to_status: RedemptionStatus,
    now: datetime,
    reason: str | None = None,
) -> list[Any]:
    """Move matching redemptions from `from_status` to `to_status` (a conditional UPDATE, so
    of two concurrent calls only one moves a row) and give their uses back."""
    table = CouponRedemption.__table__
    values: dict[str, Any] = {"status": to_status.value, "closed_at": now}
    if reason is not None:
        values["rollback_reason"] = reason
    closed = db.session.execute(
        sa.update(table)
        .where(condition, table.c.status == from_status.value)
        .values(**values)
        .returning(
            table.c.id,
            table.c.code_id,
            table.c.offer_id,
            table.c.member_id,
            table.c.discount_minor,
            table.c.counted_offer,
            table.c.counted_member,
        )
    ).all()
    _restore(closed)
    return closed


def _restore(closed: list[Any]) -> None:
    codes, offers = CouponCode.__table__, CouponOffer.__table__
    for row in sorted(closed, key=lambda r: r.code_id):
        db.session.execute(
            sa.update(codes).where(codes.c.id == row.code_id).values(uses=codes.c.uses - 1)
        )
    for row in sorted((r for r in closed if not r.counted_offer), key=lambda r: r.offer_id):
        _count_uncapped(row.offer_id, -1, -row.discount_minor)
    for row in sorted((r for r in closed if r.counted_offer), key=lambda r: r.offer_id):
        db.session.execute(
            sa.update(offers)
            .where(offers.c.id == row.offer_id)
            .values(
                redemptions_count=offers.c.redemptions_count - 1,
                discount_spent_minor=offers.c.discount_spent_minor - row.discount_minor,
            )
        )
    for row in sorted(
        (r for r in closed if r.counted_member), key=lambda r: (r.offer_id, r.member_id)
    ):
        _give_member_use_back(row.offer_id, row.member_id)


def _give_member_use_back(offer_id: int, member_id: int) -> None:
    """One use back on the per-member counter of the person who holds it now.

    A merge folds the merged member's counters into the survivor's, while the redemption
    keeps the id it was made under: the use goes back to the member that id belongs to now
    (the merge rule). Should a merge commit between our lookup and our UPDATE (which then
    finds the folded row gone), the id is resolved again and the UPDATE retried.
    """
    table = CouponMemberUse.__table__
    holder = current_member_id(member_id)
    while True:
        restored = db.session.execute(
            sa.update(table)
            .where(table.c.offer_id == offer_id, table.c.member_id == holder)
            .values(uses=table.c.uses - 1)
        ).rowcount
        now_holder = current_member_id(member_id)
        if restored or now_holder == holder:
            return
        holder = now_holder


def _checkout(checkout_ref: str) -> list[CouponRedemption]:
    return list(
        db.session.scalars(
            sa.select(CouponRedemption)
            .where(CouponRedemption.checkout_ref == checkout_ref)
            .order_by(CouponRedemption.id)
            .execution_options(populate_existing=True)
        )
    )


def capture_hold(
    checkout_ref: str,
    *,
    order_ref: str | None,
    now: datetime,
    actor: str,
    order_id: int | None = None,
) -> Checkout:
    """Turn a held checkout into redemptions. Capturing twice returns the first capture;
    an expired or released hold is refused (409)."""
    table = CouponRedemption.__table__
    values: dict[str, Any] = {"status": RedemptionStatus.REDEEMED.value, "redeemed_at": now}
    if order_ref is not None:
        values["order_ref"] = order_ref
    if order_id is not None:
        values["order_id"] = order_id
    captured = db.session.execute(
        sa.update(table)
        .where(
            table.c.checkout_ref == checkout_ref,
            table.c.status == RedemptionStatus.HELD.value,
            table.c.expires_at > now,
        )
        .values(**values)
    ).rowcount
    redemptions = _checkout(checkout_ref)
    if not redemptions:
        raise NotFound(f"no coupon hold {checkout_ref}")
    statuses = {r.status for r in redemptions}
    if statuses != {RedemptionStatus.REDEEMED.value}:
        if captured:
            raise Conflict("the hold is partly closed", reason="hold_closed")
        raise Conflict(
            f"the hold is {redemptions[0].status}; validate and redeem again",
            reason="hold_expired" if statuses & {"expired", "held"} else "hold_closed",
        )
    if captured:
        _emit("coupon.redeemed", redemptions, now)
    return Checkout(checkout_ref, RedemptionStatus.REDEEMED.value, redemptions, not captured)


def release_hold(checkout_ref: str, *, now: datetime) -> Checkout:
    """Give a held checkout's uses back. Releasing twice (or after expiry) is a no-op."""
    table = CouponRedemption.__table__
    _lock_members(_redemption_members(table.c.checkout_ref == checkout_ref))
    _close(
        table.c.checkout_ref == checkout_ref, RedemptionStatus.HELD, RedemptionStatus.RELEASED, now
    )
    redemptions = _checkout(checkout_ref)
    if not redemptions:
        raise NotFound(f"no coupon hold {checkout_ref}")
    if any(r.status == RedemptionStatus.REDEEMED for r in redemptions):
        raise Conflict(
            "the hold was captured; roll back its redemptions instead", reason="hold_captured"
        )
    return Checkout(checkout_ref, redemptions[0].status, redemptions)


def rollback_redemption(
    redemption_id: int, *, now: datetime, actor: str, reason: str | None = None
) -> CouponRedemption:
    """Refund or cancellation: restore the use, the offer total and the budget, exactly once.

    Of two concurrent rollbacks only one changes anything (conditional UPDATE on the
    status); the other, like any later one, returns the rolled-back redemption as it is.

    A redemption that belongs to an order (made by `redeem_for_order`) is refused (409
    `belongs_to_order`): the order keeps its discount, so giving the use back on its own
    would let a single-use code discount a second order. It comes back only through the
    order's refund or cancellation (`rollback_order_redemptions`). The condition is part of
    the UPDATE, so no interleaving can roll an order's redemption back here.
    """
    table = CouponRedemption.__table__
    _lock_members(_redemption_members(table.c.id == redemption_id))
    closed = _close(
        sa.and_(table.c.id == redemption_id, table.c.order_id.is_(None)),
        RedemptionStatus.REDEEMED,
        RedemptionStatus.ROLLED_BACK,
        now,
        reason,
    )
    redemption = db.session.get(CouponRedemption, redemption_id, populate_existing=True)
    if redemption is None:
        raise NotFound(f"no redemption {redemption_id}")
    if redemption.order_id is not None and not closed:
        raise Conflict(
            f"redemption {redemption_id} belongs to an order; refund or cancel the order "
            "to give the code back",
            reason="belongs_to_order",
        )
    if redemption.status == RedemptionStatus.HELD:
        raise Conflict("this redemption is held; release the hold instead", reason="held")
    if redemption.status != RedemptionStatus.ROLLED_BACK:
        raise Conflict(f"redemption {redemption_id} is {redemption.status}", reason="not_redeemed")
    if closed:
        _emit("coupon.rolled_back", [redemption], now)
    return redemption


@dataclass
class Rollback:
    """A checkout's or order's redemptions rolled back together."""

    redemptions: list[CouponRedemption]
    rolled_back_now: int

    @property
    def replayed(self) -> bool:
        return self.rolled_back_now == 0


def redemptions_by_reference(
    *, checkout_ref: str | None = None, order_ref: str | None = None
) -> list[CouponRedemption]:
    """Every redemption of one checkout (`checkout_ref`) or one order (`order_ref`)."""
    table = CouponRedemption.__table__
    condition = (
        table.c.checkout_ref == checkout_ref
        if checkout_ref is not None
        else table.c.order_ref == order_ref
    )
    return list(
        db.session.scalars(
            sa.select(CouponRedemption)
            .where(condition)
            .order_by(CouponRedemption.id)
            .execution_options(populate_existing=True)
        )
    )


def rollback_redemptions(
    redemption_ids: Sequence[int], *, reason: str | None, now: datetime, actor: str
) -> Rollback:
    """Roll back a checkout's or order's redemptions (the ids the caller may see) together,
    all or none: each one's use, offer total and budget come back exactly once.

    Refused (409) while any is held (`held`: release the hold) or belongs to an order
    posted with `POST /v1/orders` (`belongs_to_order`: refund or cancel the order). Calling
    it again rolls back nothing and answers with the same redemptions (`replayed`).
    """
    table = CouponRedemption.__table__
    _lock_members(_redemption_members(table.c.id.in_(redemption_ids)))
    rows = redemptions_by_ids(redemption_ids)
    if any(r.order_id is not None for r in rows):
        raise Conflict(
            "these redemptions belong to an order; refund or cancel the order to give the "
            "codes back",
            reason="belongs_to_order",
        )
    if any(r.status == RedemptionStatus.HELD for r in rows):
        raise Conflict("a redemption is held; release the hold instead", reason="held")
    closed = _close(
        sa.and_(table.c.id.in_(redemption_ids), table.c.order_id.is_(None)),
        RedemptionStatus.REDEEMED,
        RedemptionStatus.ROLLED_BACK,
        now,
        reason,
    )
    rows = redemptions_by_ids(redemption_ids)
    if not closed and any(r.status != RedemptionStatus.ROLLED_BACK for r in rows):
        raise Conflict(f"the redemptions are {rows[0].status}, not redeemed", reason="not_redeemed")
    if closed:
        _emit("coupon.rolled_back", [r for r in rows if r.id in {c.id for c in closed}], now)
    return Rollback(rows, len(closed))


def redemptions_by_ids(redemption_ids: Sequence[int]) -> list[CouponRedemption]:
    return list(
        db.session.scalars(
            sa.select(CouponRedemption)
            .where(CouponRedemption.id.in_(redemption_ids))
            .order_by(CouponRedemption.id)
            .execution_options(populate_existing=True)
        )
    )


def expire_holds(now: datetime, *, limit: int = 500, cursor: BatchCursor | None = None) -> int:
    """Release holds past their TTL (the periodic job). Returns how many uses came back.

    One chunk of at most `limit` held redemptions, oldest first (through the partial index
    on held rows); their members are locked first, in id order, like every coupon path.
    """
    table = CouponRedemption.__table__
    due = db.session.execute(
        sa.select(table.c.id, table.c.member_id)
        .where(table.c.status == constant(RedemptionStatus.HELD), table.c.expires_at <= now)
        .order_by(table.c.expires_at)  # ix_coupon_redemptions_held_expiry
        .limit(limit)
    ).all()
    if cursor is not None:
        cursor.handled += len(due)
    if not due:
        return 0
    _lock_members(sorted({member_id for _, member_id in due if member_id is not None}))
    closed = _close(
        sa.and_(table.c.id.in_([row_id for row_id, _ in due]), table.c.expires_at <= now),
        RedemptionStatus.HELD,
        RedemptionStatus.EXPIRED,
        now,
    )
    return len(closed)


# --- orders integration (called by loyalty.earning) -----------------------------------------


def order_ref_for(order_id: int) -> str:
    return f"order:{order_id}"


def redeem_for_order(
    *,
    order_id: int,
    codes: list[str],
    member_id: int | None,
    client_id: int,
    basket: Basket,
    now: datetime,
    actor: str,
) -> OrderDiscounts:
    """Redeem an order's coupon codes in the order's transaction; the discounts it returns
    are what earning applies. Raises CouponNotApplicable / CouponUnavailable (with
    `reason` and `reasons`) so the whole order is refused. Replaying the same order
    returns the first redemptions."""
    if not codes:
        return OrderDiscounts()
    checkout = redeem_codes(
        codes=codes,
        basket=basket,
        member_id=member_id,
        client_id=client_id,
        order_ref=order_ref_for(order_id),
        order_id=order_id,
        now=now,
        actor=actor,
        member_locked=True,  # post_order locks the member first
    )
    return checkout.totals()


def rollback_order_redemptions(*, order_id: int, now: datetime, actor: str) -> int:
    """Roll back every redemption of an order (cancellation or full refund); returns how
    many were rolled back now. Safe to call twice: the second call rolls back nothing."""
    table = CouponRedemption.__table__
    closed = _close(
        table.c.order_id == order_id, RedemptionStatus.REDEEMED, RedemptionStatus.ROLLED_BACK, now
    )
    if closed:
        redemptions = list(
            db.session.scalars(
                sa.select(CouponRedemption).where(
                    CouponRedemption.id.in_([row.id for row in closed])
                )
            )
        )
        _emit("coupon.rolled_back", redemptions, now)
    return len(closed)
