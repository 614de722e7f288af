"""Merging two members who are the same person (e.g. enrolled in a store and online).

Identities, points (through ledger entries), lots, pending points and debt move to the
survivor; the survivor keeps the higher tier; the merged member keeps its row with status
'merged' and `merged_into_id`, so its id resolves to the survivor (the merge rule:
loyalty.members.resolution). Other domains that own member-scoped tables (orders, coupons)
register a step that runs in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty import outbox
from loyalty.db import db
from loyalty.errors import Conflict, InvalidInput
from loyalty.ledger.models import PointLot
from loyalty.ledger.operations import merge_member_points
from loyalty.members.models import Member, MemberIdentity, MemberMerge, MemberStatus
from loyalty.members.operations import lock_members
from loyalty.members.resolution import repoint_merged_into
from loyalty.tiers.models import Tier

MergeStep = Callable[[int, int, datetime], dict[str, Any]]
_merge_steps: list[MergeStep] = []


def register_merge_step(func: MergeStep) -> MergeStep:
    """Run `func(merged_id, survivor_id, now) -> summary` inside every merge transaction.

    Usable as a decorator. The summary lands in the merge's audit row under the function's
    qualified name. A step that raises aborts the whole merge.
    """
    if func not in _merge_steps:
        _merge_steps.append(func)
    return func


class MergeRefused(Conflict):
    """The merge can't happen in the members' current state (already merged, erased...)."""

    slug, title = "merge-refused", "Merge not possible"


def merge_members(
    survivor_id: int, merged_id: int, *, reason: str | None, now: datetime, actor: str
) -> MemberMerge:
    """Fold `merged_id` into `survivor_id`; returns the audit row.

    Both members are locked (in id order) before anything is checked, so a concurrent
    merge of the same pair waits, then sees the first one's result and is refused.
    """
    if survivor_id == merged_id:
        raise InvalidInput("a member can't be merged into itself", field="merged_member_id")
    members = lock_members(survivor_id, merged_id)
    survivor, merged = members[survivor_id], members[merged_id]
    _check_mergeable(survivor, merged)
    ref = f"{merged.id}->{survivor.id}"
    moved_lots = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(PointLot)
        .where(PointLot.member_id == merged.id, PointLot.remaining > 0)
    )
    ledger_tx = merge_member_points(merged.id, survivor.id, ref, now=now, actor=actor)
    summary: dict[str, Any] = {
        "identities": _move_identities(merged, survivor),
        "ledger_transaction_id": ledger_tx.id if ledger_tx is not None else None,
        "points": ledger_tx.amount if ledger_tx is not None else 0,
        "lots": moved_lots or 0,
        "tier": _keep_higher_tier(survivor, merged),
    }
    for step in _merge_steps:
        summary[f"{step.__module__}.{step.__qualname__}"] = step(merged.id, survivor.id, now)
    merged.status = MemberStatus.MERGED.value
    merged.merged_into_id = survivor.id
    # Members merged into this one before now name the survivor: one hop to the person.
    summary["repointed_members"] = repoint_merged_into(merged.id, survivor.id)
    merged.updated_at = survivor.updated_at = now
    audit = MemberMerge(
        survivor_id=survivor.id,
        merged_id=merged.id,
        actor=actor,
        reason=reason,
        summary=summary,
        created_at=now,
    )
    db.session.add(audit)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except sa.exc.IntegrityError:  # member_merges.merged_id is unique: merged once only
        raise MergeRefused(f"member {merged.id} was already merged") from None
    outbox.emit(
        "member.merged",
        member_id=survivor.id,
        payload={"survivor_id": survivor.id, "merged_id": merged.id, "merge_id": audit.id},
        now=now,
    )
    return audit


def _check_mergeable(survivor: Member, merged: Member) -> None:
    for role, member in (("survivor", survivor), ("merged member", merged)):
        if member.status == MemberStatus.MERGED:
            raise MergeRefused(
                f"the {role} {member.id} was already merged into {member.merged_into_id}"
            )
        if member.status == MemberStatus.ERASED:
            raise MergeRefused(f"the {role} {member.id} was erased")


def _move_identities(merged: Member, survivor: Member) -> int:
    result = db.session.execute(
        sa.update(MemberIdentity)
        .where(MemberIdentity.member_id == merged.id)
        .values(member_id=survivor.id)
    )
    for member in (merged, survivor):  # their loaded collections saw the old owners
        db.session.expire(member, ["identities"])
    return result.rowcount or 0


def _keep_higher_tier(survivor: Member, merged: Member) -> dict[str, Any]:
    tiers = {
        tier.id: tier
        for tier in db.session.scalars(
            sa.select(Tier).where(Tier.id.in_([t for t in (survivor.tier_id, merged.tier_id) if t]))
        )
    }
    before = tiers.get(survivor.tier_id) if survivor.tier_id else None
    other = tiers.get(merged.tier_id) if merged.tier_id else None
    if other is not None and (before is None or other.rank > before.rank):
        survivor.tier_id = other.id
        return {"from": before.code if before else None, "to": other.code}
    return {"from": before.code if before else None, "to": before.code if before else None}
