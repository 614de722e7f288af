"""Coupons in members' wallets: issuing, the rewards catalogue, the wallet view, merges.

Issued coupons are new unique codes owned by the member (`coupon_codes.member_id`);
'N days from issue' offers start their clock when the code is issued. A reward is bought
with points: the burn and the new coupon are written in one transaction, and a coupon
returned unused gives the points back (`reverse_burn`) exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty.coupons.codes import CodeFormat
from loyalty.coupons.discounts import OfferTerms
from loyalty.coupons.models import (
    CodeKind,
    CodeStatus,
    CouponBatch,
    CouponCode,
    CouponMemberUse,
    CouponOffer,
    CouponOfferVersion,
    CouponRedemption,
    CouponReward,
    OfferStatus,
    RedemptionStatus,
)
from loyalty.coupons.offers import code_expiry, current_terms, get_offer, lock_for_issue
from loyalty.db import any_of, db, upsert_insert
from loyalty.errors import Conflict, InvalidInput, MemberNotActive, NotFound
from loyalty.ledger.models import LedgerTransaction
from loyalty.ledger.operations import Cause, burn_points, lock_member_accounts, reverse_burn
from loyalty.members.models import Member, MemberStatus
from loyalty.members.operations import lock_members
from loyalty.members.resolution import history_member_ids
from loyalty.outbox.models import OutboxEvent

MAX_ISSUE_PER_CALL = 10_000


# --- issuing --------------------------------------------------------------------------------


def _listed(member_ids: list[int]) -> str:
    return ", ".join(map(str, member_ids[:20])) + (" ..." if len(member_ids) > 20 else "")


def issue_to_members(
    offer_id: int,
    member_ids: Sequence[int],
    *,
    now: datetime,
    actor: str,
    source_type: str = "admin",
    source_ref: str | None = None,
    campaign_id: int | None = None,
    reward_id: int | None = None,
    burn_transaction_id: int | None = None,
    emit_events: bool = True,
    store_ids: list[str] | None = None,
) -> list[CouponCode]:
    """Give each member a new single-use code of the offer (it appears in their wallet).

    Every member must exist and be active. `source_type`/`source_ref`/`campaign_id` say
    who issued it, so redemptions can be attributed. `emit_events=False`: no
    `coupon.issued` event per code (a campaign announces its codes in its own message;
    a fan-out of a million codes must not swamp the outbox).
    """
    wanted = list(dict.fromkeys(member_ids))
    if not wanted:
        raise InvalidInput("give at least one member", field="member_ids")
    if len(wanted) > MAX_ISSUE_PER_CALL:
        raise InvalidInput(f"at most {MAX_ISSUE_PER_CALL} members per call", field="member_ids")
    status = dict(
        db.session.execute(
            sa.select(Member.id, Member.status).where(any_of(Member.id, wanted))
        ).all()
    )
    missing = [m for m in wanted if m not in status]
    if missing:
        raise NotFound(f"no member(s) {_listed(missing)}", member_ids=missing[:20])
    # The same problem as every other path that meets a blocked (or erased, merged) member.
    inactive = [m for m in wanted if status[m] != MemberStatus.ACTIVE.value]
    if inactive:
        raise MemberNotActive(f"member(s) {_listed(inactive)} not active", member_ids=inactive[:20])
    offer = lock_for_issue(offer_id)
    batch = CouponBatch(
        offer_id=offer.id,
        kind="issued",
        requested=len(wanted),
        created_count=0,
        max_uses_per_code=1,
        campaign_id=campaign_id,
        created_at=now,
        created_by=actor,
    )
    db.session.add(batch)
    db.session.flush()
    common = {
        "offer_id": offer.id,
        "batch_id": batch.id,
        "kind": CodeKind.UNIQUE.value,
        "status": CodeStatus.ACTIVE.value,
        "max_uses": 1,
        "uses": 0,
        "expires_at": code_expiry(current_terms(offer), now),
        "issued_at": now,
        "source_type": source_type,
        "source_ref": source_ref,
        "campaign_id": campaign_id,
        "reward_id": reward_id,
        "burn_transaction_id": burn_transaction_id,
        "store_ids": store_ids,
        "created_at": now,
    }
    table = CouponCode.__table__
    statement = upsert_insert(table).on_conflict_do_nothing(index_elements=["code"])
    fmt = CodeFormat()
    pending = wanted
    for _ in range(5):
        codes = fmt.make(len(pending))
        db.session.execute(
            statement,
            [{**common, "code": c, "member_id": m} for c, m in zip(codes, pending, strict=True)],
        )
        done = set(
            db.session.scalars(
                sa.select(CouponCode.member_id).where(CouponCode.batch_id == batch.id)
            )
        )
        pending = [m for m in wanted if m not in done]
        if not pending:
            break
    else:
        raise Conflict("could not generate distinct codes")
    batch.created_count = len(wanted)
    db.session.flush()
    issued = list(
        db.session.scalars(
            sa.select(CouponCode).where(CouponCode.batch_id == batch.id).order_by(CouponCode.id)
        )
    )
    if not emit_events:
        return issued
    # One `coupon.issued` event per code (ids only), so notifications can tell the member;
    # one multi-row INSERT, as the codes were.
    db.session.execute(
        sa.insert(OutboxEvent.__table__),
        [
            {
                "topic": "coupon.issued",
                "member_id": code.member_id,
                "payload": {
                    "code_id": code.id,
                    "offer_id": offer.id,
                    "reward_id": reward_id,
                    "campaign_id": campaign_id,
                    "source_type": source_type,
                },
                "occurred_at": now,
                "dispatched_at": None,
            }
            for code in issued
        ],
    )
    return issued


# --- rewards catalogue ------------------------------------------------------------------------


def create_reward(data: Mapping[str, Any], *, now: datetime) -> CouponReward:
    get_offer(data["offer_id"])
    reward = CouponReward(
        offer_id=data["offer_id"],
        name=data["name"],
        description=data.get("description"),
        points_cost=data["points_cost"],
        stock=data.get("stock"),
        active=data.get("active", True),
        created_at=now,
    )
    db.session.add(reward)
    db.session.flush()
    return reward


def update_reward(reward_id: int, changes: Mapping[str, Any]) -> CouponReward:
    reward = get_reward(reward_id)
    for name in ("name", "description", "points_cost", "stock", "active"):
        if name in changes:
            setattr(reward, name, changes[name])
    db.session.flush()
    return reward


def get_reward(reward_id: int) -> CouponReward:
    reward = db.session.get(CouponReward, reward_id)
    if reward is None:
        raise NotFound(f"no reward {reward_id}")
    return reward


def list_rewards(*, only_available: bool) -> list[CouponReward]:
    query = sa.select(CouponReward).order_by(CouponReward.points_cost, CouponReward.id)
    if only_available:
        query = (
            query.join(CouponOffer, CouponOffer.id == CouponReward.offer_id)
            .where(CouponReward.active.is_(True), CouponOffer.status == OfferStatus.ACTIVE.value)
            .where(sa.or_(CouponReward.stock.is_(None), CouponReward.stock > 0))
        )
    return list(db.session.scalars(query))


class RewardUnavailable(Conflict):
    """The reward is inactive, out of stock, or its offer isn't running."""

    slug, title = "reward-unavailable", "Reward not available"


def buy_reward(reward_id: int, *, member_id: int, now: datetime, actor: str) -> CouponCode:
    """Burn the reward's points and issue its coupon to the member, in one transaction.

    Raises InsufficientPoints (409) when the member can't pay; stock is taken with a
    conditional UPDATE, so it never goes below zero. The member and their accounts are
    locked first, before the reward and offer rows (docs/architecture.md, "Lock order")."""
    lock_member_accounts(member_id)
    reward = db.session.get(CouponReward, reward_id)
    if reward is None or not reward.active:
        raise NotFound(f"no reward {reward_id}")
    offer = get_offer(reward.offer_id)
    if offer.status != OfferStatus.ACTIVE:
        raise RewardUnavailable(f"reward {reward_id} is not available now")
    if reward.stock is not None:
        taken = db.session.execute(
            sa.update(CouponReward)
            .where(CouponReward.id == reward.id, CouponReward.stock > 0)
            .values(stock=CouponReward.stock - 1)
        ).rowcount
        if taken != 1:
            raise RewardUnavailable(f"reward {reward_id} is out of stock", reason="out_of_stock")
    (code,) = issue_to_members(
        offer.id,
        [member_id],
        now=now,
        actor=actor,
        source_type="reward",
        source_ref=str(reward.id),
        reward_id=reward.id,
    )
    burn = burn_points(
        member_id,
        reward.points_cost,
        Cause("reward", f"coupon:{code.id}"),
        now=now,
        actor=actor,
        details={"reward_id": reward.id, "coupon_id": code.id},
    )
    code.burn_transaction_id = burn.id
    db.session.flush()
    return code


def return_reward_coupon(
    code_id: int, *, member_id: int | None, now: datetime, actor: str
) -> CouponCode:
    """Give back an unused reward coupon: it stops working and the points come back, once.

    `member_id` (the member asking) must own it; None for support. The status moves with a
    conditional UPDATE, so two concurrent returns refund once and a concurrent redemption
    either takes the use first (and the return is refused) or finds the code returned.
    """
    code = db.session.get(CouponCode, code_id)
    if code is None or (member_id is not None and code.member_id != member_id):
        raise NotFound(f"no coupon {code_id}")
    if code.burn_transaction_id is None:
        raise Conflict("only coupons bought with points can be returned", reason="not_a_reward")
    # Members first (the owner and whoever paid), in id order, then the code row.
    burn = db.session.get(LedgerTransaction, code.burn_transaction_id)
    lock_members(*(m for m in (code.member_id, burn.member_id if burn else None) if m is not None))
    returned = db.session.execute(
        sa.update(CouponCode)
        .where(
            CouponCode.id == code_id,
            CouponCode.status == CodeStatus.ACTIVE.value,
            CouponCode.uses == 0,
        )
        .values(status=CodeStatus.RETURNED.value)
    ).rowcount
    if returned != 1:
        raise Conflict(
            "the coupon was used, is held, or was already returned", reason="not_returnable"
        )
    reverse_burn(
        code.burn_transaction_id, Cause("reward_return", f"coupon:{code.id}"), now=now, actor=actor
    )
    if code.reward_id is not None:
        db.session.execute(
            sa.update(CouponReward)
            .where(CouponReward.id == code.reward_id, CouponReward.stock.is_not(None))
            .values(stock=CouponReward.stock + 1)
        )
    db.session.refresh(code)
    return code


# --- the wallet -------------------------------------------------------------------------------


def _where_usable(terms: OfferTerms) -> dict[str, Any]:
    return {
        "channels": sorted(terms.channels) or ["any"],
        "store_ids": sorted(terms.store_ids),
        "regions": sorted(terms.regions),
        "everywhere": not (terms.channels or terms.store_ids or terms.regions),
    }


def wallet_status(code: CouponCode, held: bool, terms: OfferTerms, now: datetime) -> str:
    if held:
        return "held"
    if code.max_uses is not None and code.uses >= code.max_uses:
        return "redeemed"
    expired = (code.expires_at is not None and now >= code.expires_at) or (
        terms.valid_until is not None and now >= terms.valid_until
    )
    return "expired" if expired else "available"


def member_wallet(member_id: int, *, now: datetime) -> list[dict[str, Any]]:
    """The member's coupons with status (available, held, redeemed, expired) and where each
    can be used. Returned and voided coupons are not shown."""
    rows = db.session.execute(
        sa.select(CouponCode, CouponOffer, CouponOfferVersion.terms)
        .join(CouponOffer, CouponOffer.id == CouponCode.offer_id)
        .join(
            CouponOfferVersion,
            sa.and_(
                CouponOfferVersion.offer_id == CouponOffer.id,
                CouponOfferVersion.version == CouponOffer.version,
            ),
        )
        .where(CouponCode.member_id == member_id, CouponCode.status == CodeStatus.ACTIVE.value)
        .order_by(CouponCode.id.desc())
    ).all()
    code_ids = [code.id for code, _, _ in rows]
    held = (
        set(
            db.session.scalars(
                sa.select(CouponRedemption.code_id).where(
                    CouponRedemption.code_id.in_(code_ids),
                    CouponRedemption.status == RedemptionStatus.HELD.value,
                    CouponRedemption.expires_at > now,
                )
            )
        )
        if code_ids
        else set()
    )
    wallet = []
    for code, offer, raw_terms in rows:
        terms = OfferTerms.from_json(raw_terms)
        status = wallet_status(code, code.id in held, terms, now)
        if offer.status != OfferStatus.ACTIVE and status == "available":
            status = "expired"
        wallet.append(
            {
                "id": code.id,
                "code": code.code,
                "status": status,
                "offer": {
                    "id": offer.id,
                    "name": offer.name,
                    "description": offer.description,
                    "kind": terms.kind.value,
                    "version": offer.version,
                },
                "expires_at": min(
                    (t for t in (code.expires_at, terms.valid_until) if t is not None), default=None
                ),
                "valid_from": terms.valid_from,
                "where": _where_usable(terms),
                "uses": code.uses,
                "max_uses": code.max_uses,
                "returnable": code.burn_transaction_id is not None and code.uses == 0,
                "source": {"type": code.source_type, "ref": code.source_ref},
            }
        )
    return wallet


# --- merges and privacy -------------------------------------------------------------------


def merge_member_coupons(merged_id: int, survivor_id: int, now: datetime) -> dict[str, Any]:
    """Move the merged member's coupons to the survivor and fold per-member counters.

    Counters add up (so a merge never grants extra uses); the row's max is raised to the
    sum when needed so the CHECK holds. Redemptions keep their original member id."""
    moved = db.session.execute(
        sa.update(CouponCode).where(CouponCode.member_id == merged_id).values(member_id=survivor_id)
    ).rowcount
    folded = 0
    for row in db.session.scalars(
        sa.select(CouponMemberUse).where(CouponMemberUse.member_id == merged_id)
    ).all():
        table = CouponMemberUse.__table__
        db.session.execute(
            upsert_insert(table)
            .values(
                offer_id=row.offer_id, member_id=survivor_id, uses=row.uses, max_uses=row.max_uses
            )
            .on_conflict_do_update(
                index_elements=["offer_id", "member_id"],
                set_={
                    "uses": table.c.uses + row.uses,
                    "max_uses": sa.func.max(table.c.max_uses, table.c.uses + row.uses)
                    if db.engine.dialect.name == "sqlite"
                    else sa.func.greatest(table.c.max_uses, table.c.uses + row.uses),
                },
            )
        )
        db.session.delete(row)
        folded += 1
    db.session.flush()
    return {"coupons": moved or 0, "member_limits": folded}


def export_member_coupons(member_id: int) -> dict[str, Any]:
    """The member's coupons and redemptions (also those made under ids merged into it), for
    a privacy export."""
    ids = history_member_ids(member_id)
    codes = db.session.scalars(
        sa.select(CouponCode).where(CouponCode.member_id == member_id).order_by(CouponCode.id)
    ).all()
    redemptions = db.session.scalars(
        sa.select(CouponRedemption)
        .where(CouponRedemption.member_id.in_(ids))
        .order_by(CouponRedemption.id)
    ).all()
    iso = lambda t: t.isoformat() if t else None  # noqa: E731
    return {
        "coupons": [
            {
                "id": c.id,
                "code": c.code,
                "offer_id": c.offer_id,
                "status": c.status,
                "uses": c.uses,
                "issued_at": iso(c.issued_at),
                "expires_at": iso(c.expires_at),
                "source_type": c.source_type,
            }
            for c in codes
        ],
        "redemptions": [
            {
                "id": r.id,
                "offer_id": r.offer_id,
                "status": r.status,
                "store_id": r.store_id,
                "channel": r.channel,
                "order_ref": r.order_ref,
                "discount_minor": r.discount_minor,
                "currency": r.currency,
                "created_at": iso(r.created_at),
            }
            for r in redemptions
        ],
    }
