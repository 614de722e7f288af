"""Tier operations: manage tiers, measure qualification, move members between tiers.

Operations flush, never commit; the request or job edge commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from loyalty import outbox
from loyalty.cache import TTLCache
from loyalty.db import db
from loyalty.errors import Conflict, InvalidInput, NotFound
from loyalty.ledger.models import LedgerTransaction, TransactionKind
from loyalty.members.models import Member, MemberStatus
from loyalty.members.resolution import history_members
from loyalty.tiers.models import Tier, TierBasis

TIER_FIELDS = (
    "code",
    "name",
    "rank",
    "basis",
    "threshold",
    "window_days",
    "currency",
    "earn_multiplier_pct",
    "benefits",
)


# --- admin ----------------------------------------------------------------------------------


def list_tiers() -> list[Tier]:
    """Every tier, lowest rank first (one small query; callers reuse the list)."""
    return list(db.session.scalars(sa.select(Tier).order_by(Tier.rank)))


@dataclass(frozen=True)
class TierSnapshot:
    """A tier as earning and qualification read it (a cached copy, not an ORM object)."""

    id: int
    code: str
    rank: int
    basis: str
    threshold: int
    window_days: int
    currency: str | None
    earn_multiplier_pct: int


# Read on every order: cached per process (see loyalty.cache; a tier written in this process
# clears it at once, other processes see the change within the TTL).
_tiers_cache: TTLCache[tuple[TierSnapshot, ...]] = TTLCache("tiers", models=(Tier,))


def cached_tiers() -> tuple[TierSnapshot, ...]:
    """Every tier, lowest rank first, as snapshots; usable wherever `list_tiers()` is read."""
    return _tiers_cache.get("all", _load_tier_snapshots)


def _load_tier_snapshots() -> tuple[TierSnapshot, ...]:
    rows = db.session.execute(
        sa.select(
            Tier.id,
            Tier.code,
            Tier.rank,
            Tier.basis,
            Tier.threshold,
            Tier.window_days,
            Tier.currency,
            Tier.earn_multiplier_pct,
        ).order_by(Tier.rank)
    )
    return tuple(TierSnapshot(*row) for row in rows)


def get_tier(tier_id: int) -> Tier:
    tier = db.session.get(Tier, tier_id)
    if tier is None:
        raise NotFound(f"no tier {tier_id}")
    return tier


def _validate(values: Mapping[str, Any], tier_id: int | None) -> None:
    currencies = current_app.extensions["omniloyal.settings"].currencies
    if values.get("basis") == TierBasis.SPEND and not values.get("currency"):
        raise InvalidInput("a spend-based tier needs a currency", field="currency")
    currency = values.get("currency")
    if currency is not None and currency not in currencies:
        raise InvalidInput(f"{currency!r} is not a configured currency", field="currency")
    for name in ("code", "rank"):
        clash = db.session.scalar(
            sa.select(Tier.id).where(getattr(Tier, name) == values[name], Tier.id != (tier_id or 0))
        )
        if clash is not None:
            raise Conflict(f"another tier already has {name} {values[name]!r}", field=name)


def create_tier(data: Mapping[str, Any], *, now: datetime) -> Tier:
    """Add a tier; code and rank are unique."""
    values = {name: data.get(name) for name in TIER_FIELDS}
    values = {**_defaults(), **{k: v for k, v in values.items() if v is not None}}
    _validate(values, None)
    tier = Tier(**values, created_at=now, updated_at=now)
    db.session.add(tier)
    db.session.flush()
    return tier


def _defaults() -> dict[str, Any]:
    return {
        "basis": TierBasis.QUALIFYING_POINTS.value,
        "threshold": 0,
        "window_days": 365,
        "earn_multiplier_pct": 100,
    }


def update_tier(tier_id: int, changes: Mapping[str, Any], *, now: datetime) -> Tier:
    """Change a tier. Members move to a new tier at their next earning or evaluation."""
    tier = get_tier(tier_id)
    values = {name: getattr(tier, name) for name in TIER_FIELDS} | dict(changes)
    _validate(values, tier.id)
    for name, value in changes.items():
        setattr(tier, name, value)
    tier.updated_at = now
    db.session.flush()
    return tier


def delete_tier(tier_id: int) -> None:
    """Remove a tier nobody holds (members in it are a 409: re-evaluate them first)."""
    tier = get_tier(tier_id)
    holders = db.session.scalar(
        sa.select(sa.func.count()).select_from(Member).where(Member.tier_id == tier.id)
    )
    if holders:
        raise Conflict(f"{holders} member(s) are in tier {tier.code}; move them first")
    db.session.delete(tier)
    db.session.flush()


# --- qualification --------------------------------------------------------------------------


def _basis_key(tier: Tier) -> tuple[str, int, str | None]:
    return (tier.basis, tier.window_days, tier.currency if tier.basis == TierBasis.SPEND else None)


def qualifying_points(member_ids: Sequence[int], since: datetime) -> dict[int, int]:
    """Qualifying points since `since`, per person (not the balance), merged ids included.

    Points earned, less what refunds and cancellations reversed: the whole reversal
    (`details.reversed_points` of the reverse transaction), also the part the balance
    couldn't pay and the return policy forgave, since those points were never really
    earned. Plus the qualifying points brought by the CSV import
    (`member_imports.qualifying_points`, counted from the import day). Summed over every id
    that belongs to the person (see loyalty.members.resolution).
    """
    from loyalty.members.models import MemberImport

    people = history_members(member_ids)
    tx = LedgerTransaction
    # Reversals written before `reversed_points` was recorded count what they took.
    reversed_points = sa.func.coalesce(-tx.details["reversed_points"].as_integer(), tx.amount)
    earned = (
        sa.select(
            tx.member_id.label("member_id"),
            sa.case(
                (tx.kind == TransactionKind.REVERSE.value, reversed_points), else_=tx.amount
            ).label("points"),
        )
        .join(people, people.c.member_id == tx.member_id)
        .where(
            tx.created_at >= since,
            tx.kind.in_([TransactionKind.EARN.value, TransactionKind.REVERSE.value]),
        )
    )
    imported = (
        sa.select(
            MemberImport.member_id.label("member_id"),
            MemberImport.qualifying_points.label("points"),
        )
        .join(people, people.c.member_id == MemberImport.member_id)
        .where(MemberImport.imported_at >= since, MemberImport.qualifying_points > 0)
    )
    movements = sa.union_all(earned, imported).subquery("movements")
    rows = db.session.execute(
        sa.select(people.c.person_id, sa.func.sum(movements.c.points))
        .join(people, people.c.member_id == movements.c.member_id)
        .group_by(people.c.person_id)
    ).all()
    return {person_id: max(0, int(total or 0)) for person_id, total in rows}


def net_spend(member_ids: Sequence[int], since: datetime, currency: str | None) -> dict[int, int]:
    """Order totals minus refunds since `since` (cancelled orders excluded), per person
    (orders kept under ids merged into them included)."""
    from loyalty.earning.models import Order, OrderStatus

    people = history_members(member_ids)
    query = (
        sa.select(people.c.person_id, sa.func.sum(Order.total_minor - Order.refunded_minor))
        .join(people, people.c.member_id == Order.member_id)
        .where(
            Order.occurred_at >= since,
            Order.status != OrderStatus.CANCELLED.value,
        )
        .group_by(people.c.person_id)
    )
    if currency is not None:
        query = query.where(Order.currency == currency)
    return {person_id: int(total or 0) for person_id, total in db.session.execute(query).all()}


def _measure(
    key: tuple[str, int, str | None], member_ids: Sequence[int], now: datetime
) -> dict[int, int]:
    basis, window_days, currency = key
    since = now - timedelta(days=window_days)
    if basis == TierBasis.SPEND:
        return net_spend(member_ids, since, currency)
    return qualifying_points(member_ids, since)


def eligible_tiers(
    member_ids: Sequence[int], tiers: Sequence[Tier], now: datetime, *, above_rank: int = -1
) -> dict[int, Tier | None]:
    """The highest tier each member qualifies for, looking only at tiers above `above_rank`.

    One query per distinct (basis, window) among those tiers, for all the members at once.
    """
    candidates = [tier for tier in tiers if tier.rank > above_rank]
    values: dict[tuple[str, int, str | None], dict[int, int]] = {}
    result: dict[int, Tier | None] = {member_id: None for member_id in member_ids}
    for tier in sorted(candidates, key=lambda t: t.rank):
        key = _basis_key(tier)
        if tier.threshold > 0 and key not in values:
            values[key] = _measure(key, member_ids, now)
        for member_id in member_ids:
            value = values[key].get(member_id, 0) if tier.threshold > 0 else 0
            if value >= tier.threshold:
                result[member_id] = tier
    return result


def _current_tier_id(member_id: int) -> int | None:
    """The member's tier as committed now (after the caller's row locks), not as cached."""
    return db.session.scalar(
        sa.select(Member.tier_id)
        .where(Member.id == member_id)
        .execution_options(populate_existing=True)
    )


@dataclass(frozen=True)
class TierChange:
    member_id: int
    from_tier: Tier | None
    to_tier: Tier | None


def reevaluate_member_tier(
    member_id: int,
    now: datetime,
    allow_downgrade: bool = False,
    *,
    tiers: Sequence[Tier] | None = None,
    reason: str = "earning",
) -> TierChange | None:
    """Move the member to the tier they qualify for; returns the change, or None.

    Upgrades always; downgrades only with `allow_downgrade` (the periodic job). Call it in
    the transaction that earned the points, after the ledger locked the member's accounts,
    so concurrent earnings for one member evaluate one after the other. Emits tier.changed.
    """
    tiers = list_tiers() if tiers is None else tiers
    if not tiers:
        return None
    current_id = _current_tier_id(member_id)  # once: the generator below ran it per tier
    current = next((tier for tier in tiers if tier.id == current_id), None)
    current_rank = current.rank if current is not None else -1
    if allow_downgrade:
        target = eligible_tiers([member_id], tiers, now)[member_id]
        if (target.id if target else None) == (current.id if current else None):
            return None
    else:
        if current_rank >= tiers[-1].rank:
            return None  # already at the top: nothing to measure
        target = eligible_tiers([member_id], tiers, now, above_rank=current_rank)[member_id]
        if target is None:
            return None
    return _move(member_id, current, target, now, reason)


def _move(
    member_id: int, current: Tier | None, target: Tier | None, now: datetime, reason: str
) -> TierChange | None:
    # Conditional on the tier we measured against: a concurrent change wins, not this one.
    condition = Member.tier_id.is_(None) if current is None else Member.tier_id == current.id
    changed = db.session.execute(
        sa.update(Member)
        .where(Member.id == member_id, condition)
        .values(tier_id=target.id if target is not None else None, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        return None
    member = db.session.get(Member, member_id)
    if member is not None:
        db.session.refresh(member, ["tier_id", "updated_at"])
    upward = target is not None and (current is None or target.rank > current.rank)
    outbox.emit(
        "tier.changed",
        member_id=member_id,
        payload={
            "member_id": member_id,
            "from": current.code if current is not None else None,
            "to": target.code if target is not None else None,
            "direction": "up" if upward else "down",
            "reason": reason,
        },
        now=now,
    )
    return TierChange(member_id, current, target)


def evaluate_tier_batch(
    now: datetime, *, after_id: int = 0, batch_size: int = 500
) -> tuple[int, int]:
    """Re-evaluate one batch of active members (ids after `after_id`), downgrades included.

    Returns (last member id seen, members whose tier changed); last id 0 means done. The
    batch is measured with one query per basis; only members whose tier would change are
    locked and measured again, so a concurrent earning is never judged on a stale sum.
    """
    from loyalty.ledger.operations import lock_member_accounts

    tiers = list_tiers()
    rows = db.session.execute(
        sa.select(Member.id, Member.tier_id)
        .where(Member.id > after_id, Member.status == MemberStatus.ACTIVE.value)
        .order_by(Member.id)
        .limit(batch_size)
    ).all()
    if not rows:
        return 0, 0
    changed = 0
    targets = eligible_tiers([row[0] for row in rows], tiers, now) if tiers else {}
    for member_id, tier_id in rows:
        target = targets.get(member_id)
        if (target.id if target is not None else None) == tier_id:
            continue
        # A merge may have folded this member into another since the batch was read.
        person_id = lock_member_accounts(member_id, require_active=False).member_id
        change = reevaluate_member_tier(
            person_id, now, allow_downgrade=True, tiers=tiers, reason="evaluation"
        )
        changed += change is not None
    return rows[-1][0], changed


# --- progress -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierProgress:
    current: Tier | None
    next: Tier | None
    basis: str | None
    window_days: int | None
    qualifying_value: int
    remaining: int


def tier_progress(
    member_id: int,
    now: datetime,
    *,
    tiers: Sequence[Tier] | None = None,
    current_tier_id: int | None = None,
) -> TierProgress:
    """The member's tier, the next one up and how far they are from it.

    The value is measured on the next tier's basis and window (the current tier's when the
    member is at the top), so the app can say "1,250 more points to Gold".
    """
    tiers = list_tiers() if tiers is None else tiers
    if current_tier_id is None:
        current_tier_id = _current_tier_id(member_id)
    current = next((tier for tier in tiers if tier.id == current_tier_id), None)
    current_rank = current.rank if current is not None else -1
    upcoming = next((tier for tier in tiers if tier.rank > current_rank), None)
    measured = upcoming or current
    if measured is None:
        return TierProgress(None, None, None, None, 0, 0)
    value = _measure(_basis_key(measured), [member_id], now).get(member_id, 0)
    remaining = max(0, upcoming.threshold - value) if upcoming is not None else 0
    return TierProgress(current, upcoming, measured.basis, measured.window_days, value, remaining)
