"""Referrals: every member's personal code and share link; a new member who joins through
it and makes a first purchase rewards both with points.

Abuse checks at the claim and again at the reward: not the same person (merges followed),
no phone, card or device fingerprint shared with the referrer (compared as HMAC digests
kept in `referral_marks`, never the values), the referee still new (no purchase before the
claim), and the referrer's cap of rewarded referrals. The reward is one conditional status
change (pending -> rewarded) under both members' locks (ascending id), so a redelivered
order event or two workers reward once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from campaigns.journey_models import Referral, ReferralCode, ReferralMark
from loyalty import outbox
from loyalty.db import constant, db, upsert_insert
from loyalty.errors import Conflict, NotFound
from loyalty.members.models import IdentityKind, Member, MemberIdentity, MemberStatus
from loyalty.members.resolution import history_member_ids, lock_current_member

REFERRER_POINTS = 500
REFEREE_POINTS = 250
MAX_REWARDED_PER_REFERRER = 20
CLAIM_WITHIN_DAYS = 30  # a member may claim a code this long after enrolling
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class ReferralRefused(Conflict):
    """The referral can't be accepted: the same person, a shared phone, card or device, a
    member who is not new any more, or a code already claimed."""

    slug, title = "referral-refused", "Referral refused"


def _digest(kind: str, value: str) -> str:
    key = (current_app.config.get("SECRET_KEY") or "omniloyal").encode()
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def _mark(member_id: int, kind: str, value: str, now: datetime) -> None:
    table = ReferralMark.__table__
    db.session.execute(
        upsert_insert(table)
        .values(member_id=member_id, kind=kind, digest=_digest(kind, value), created_at=now)
        .on_conflict_do_nothing(index_elements=["member_id", "kind", "digest"])
    )


def _mark_identities(person_ids: list[int], now: datetime) -> None:
    for kind, value in db.session.execute(
        sa.select(MemberIdentity.kind, MemberIdentity.value).where(
            MemberIdentity.member_id.in_(person_ids),
            MemberIdentity.kind.in_([IdentityKind.PHONE.value, IdentityKind.CARD.value]),
        )
    ):
        _mark(person_ids[0], kind, value, now)


def code_for(
    member_id: int, *, now: datetime, device_fingerprint: str | None = None
) -> ReferralCode:
    """The member's personal code (made on first ask; a merged member's code serves the
    survivor). Remembers the phone, card and device the referrer uses, as digests."""
    member = lock_current_member(member_id)
    ids = history_member_ids(member.id)
    _mark_identities(ids, now)
    if device_fingerprint:
        _mark(member.id, "device", device_fingerprint, now)
    existing = db.session.scalar(
        sa.select(ReferralCode)
        .where(ReferralCode.member_id.in_(ids))
        .order_by(ReferralCode.created_at)
    )
    if existing is not None:
        return existing
    for _ in range(5):
        code = "".join(secrets.choice(ALPHABET) for _ in range(8))
        inserted = db.session.execute(
            upsert_insert(ReferralCode.__table__)
            .values(member_id=member.id, code=code, created_at=now)
            .on_conflict_do_nothing()
            .returning(ReferralCode.__table__.c.code)
        ).scalar()
        if inserted is not None:
            return db.session.get(ReferralCode, member.id)
    raise Conflict("could not make a distinct referral code")


def existing_code(member_id: int) -> str | None:
    """The person's referral code if one was made (any of their merged ids')."""
    return db.session.scalar(
        sa.select(ReferralCode.code)
        .where(ReferralCode.member_id.in_(history_member_ids(member_id)))
        .order_by(ReferralCode.created_at)
        .limit(1)
    )


def _shared_marks(referrer_ids: list[int], referee_ids: list[int]) -> str | None:
    mine = sa.select(ReferralMark.kind, ReferralMark.digest).where(
        ReferralMark.member_id.in_(referrer_ids)
    )
    kind = db.session.scalar(
        sa.select(ReferralMark.kind)
        .where(
            ReferralMark.member_id.in_(referee_ids),
            sa.tuple_(ReferralMark.kind, ReferralMark.digest).in_(mine),
        )
        .limit(1)
    )
    return None if kind is None else f"same {kind}"


def claim(
    member_id: int, code: str, *, now: datetime, device_fingerprint: str | None = None
) -> Referral:
    """The new member (the token's) joined through `code`. Refused (409) for self-referral
    or a member who is no longer new; a second claim of the same code answers the same."""
    owner = db.session.scalar(
        sa.select(ReferralCode.member_id).where(ReferralCode.code == code.upper())
    )
    if owner is None:
        raise NotFound("no such referral code")
    locked = {i: lock_current_member(i) for i in sorted({member_id, owner})}  # ascending
    referee, referrer = locked[member_id], locked[owner]
    referee_ids, referrer_ids = history_member_ids(referee.id), history_member_ids(referrer.id)
    existing = db.session.scalar(sa.select(Referral).where(Referral.referee_id.in_(referee_ids)))
    if existing is not None:
        if existing.referrer_id in referrer_ids:
            return existing
        raise ReferralRefused("this member already joined through another code")
    if referee.id == referrer.id:
        raise ReferralRefused("a member can't refer themselves")
    if referrer.status != MemberStatus.ACTIVE.value:
        raise ReferralRefused("the referrer is not active")
    if referee.created_at < now - timedelta(days=CLAIM_WITHIN_DAYS) or _has_ordered(referee_ids):
        raise ReferralRefused("only a new member without purchases can join through a code")
    _mark_identities(referee_ids, now)
    if device_fingerprint:
        _mark(referee.id, "device", device_fingerprint, now)
    shared = _shared_marks(referrer_ids, referee_ids)
    if shared is not None:
        raise ReferralRefused(f"self-referral: {shared} as the referrer")
    referral = Referral(
        referrer_id=referrer.id, referee_id=referee.id, status="pending", created_at=now
    )
    db.session.add(referral)
    db.session.flush()
    return referral


def _has_ordered(person_ids: list[int], *, before_order: int | None = None) -> bool:
    """Any order of the person (before `before_order`: an earlier purchase than that one)."""
    from loyalty.earning.models import Order

    query = sa.select(Order.id).where(Order.member_id.in_(person_ids))
    if before_order is not None:
        query = query.where(Order.id < before_order)
    return db.session.scalar(query.limit(1)) is not None


@outbox.consumer("order.posted", name="campaigns.referrals")
def reward_first_purchase(event: outbox.Event) -> None:
    """The referee's first purchase rewards both, once, within the referrer's cap."""
    if event.member_id is None:
        return
    try:
        referee_ids = history_member_ids(event.member_id)
    except NotFound:
        return
    pending = db.session.scalar(
        sa.select(Referral).where(
            Referral.referee_id.in_(referee_ids), Referral.status == constant("pending")
        )
    )
    if pending is None:
        return
    reward(pending.id, order_id=(event.payload or {}).get("order_id"), now=event.occurred_at)


def reward(referral_id: int, *, order_id: int | None, now: datetime) -> Referral:
    from loyalty.ledger import operations as ledger

    referral = db.session.get(Referral, referral_id)
    assert referral is not None
    for member_id in sorted({referral.referrer_id, referral.referee_id}):  # ascending
        lock_current_member(member_id)
    referral = db.session.scalar(
        sa.select(Referral)
        .where(Referral.id == referral_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert referral is not None
    if referral.status != "pending":
        return referral
    referee_ids = history_member_ids(referral.referee_id)
    referrer_ids = history_member_ids(referral.referrer_id)
    if order_id is None or _has_ordered(referee_ids, before_order=order_id):
        return _refuse(referral, "not the first purchase", now)
    shared = _shared_marks(referrer_ids, referee_ids)
    if shared is not None:
        return _refuse(referral, f"self-referral: {shared}", now)
    referee = db.session.get(Member, referee_ids[0])
    referrer = db.session.get(Member, referrer_ids[0])
    if referee is None or referrer is None or referee.id == referrer.id:
        return _refuse(referral, "self-referral: same person", now)
    rewarded = db.session.scalar(
        sa.select(sa.func.count()).where(
            Referral.referrer_id.in_(referrer_ids), Referral.status == constant("rewarded")
        )
    )
    referral.order_id = order_id
    if referee.status == MemberStatus.ACTIVE.value:
        ledger.earn_points(
            referee.id,
            REFEREE_POINTS,
            ledger.Cause("referral", f"{referral.id}:referee"),
            now=now,
            actor="referrals",
            member_locked=True,
        )
    if rewarded < MAX_REWARDED_PER_REFERRER and referrer.status == MemberStatus.ACTIVE.value:
        ledger.earn_points(
            referrer.id,
            REFERRER_POINTS,
            ledger.Cause("referral", f"{referral.id}:referrer"),
            now=now,
            actor="referrals",
            member_locked=True,
        )
        referral.status, referral.rewarded_at = "rewarded", now
    else:
        referral.status, referral.reason, referral.rewarded_at = "refused", "referrer cap", now
    db.session.flush()
    return referral


def _refuse(referral: Referral, reason: str, now: datetime) -> Referral:
    referral.status, referral.reason, referral.rewarded_at = "refused", reason[:64], now
    db.session.flush()
    return referral


def my_referrals(member_id: int) -> dict[str, Any]:
    ids = history_member_ids(member_id)
    counts = dict(
        db.session.execute(
            sa.select(Referral.status, sa.func.count())
            .where(Referral.referrer_id.in_(ids))
            .group_by(Referral.status)
        ).all()
    )
    return {
        "pending": counts.get("pending", 0),
        "rewarded": counts.get("rewarded", 0),
        "refused": counts.get("refused", 0),
    }
