"""Privacy: export everything about a member as JSON; erase their personal data.

Erasure removes what identifies the person (name, birthday, free attributes, every
identity, so the phone or email can enrol again) and keeps the ledger exactly as it is:
the points stay on the pseudonymous member id, so balances, liability and history totals
don't change. Members that were merged into the erased one are scrubbed too. Other domains
add their own export sections and erase steps through the registries below.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from loyalty import outbox
from loyalty.db import db
from loyalty.errors import MemberNotActive
from loyalty.ledger.models import LedgerTransaction, PointHold, PointLot
from loyalty.ledger.operations import member_balance
from loyalty.members.models import Member, MemberIdentity, MemberMerge, MemberStatus
from loyalty.members.operations import get_member
from loyalty.members.resolution import history_member_ids, lock_current_member
from loyalty.tiers.models import Tier

ExportSection = Callable[[int], Any]
EraseStep = Callable[[int, datetime], dict[str, Any]]
_export_sections: dict[str, ExportSection] = {}
_erase_steps: dict[str, EraseStep] = {}


def register_export_section(name: str, func: ExportSection) -> None:
    """Add `name: func(member_id)` to every export (JSON-able data). `member_id` is the
    surviving member: merge steps have already moved other domains' rows to it."""
    _export_sections[name] = func


def register_erase_step(name: str, func: EraseStep) -> None:
    """Run `func(member_id, now) -> summary` in every erasure's transaction. Remove or
    pseudonymise personal data; keep financial records."""
    _erase_steps[name] = func


def _json(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _row(obj: Any, names: list[str]) -> dict[str, Any]:
    return {name: _json(getattr(obj, name)) for name in names}


PROFILE = [
    "id",
    "status",
    "name",
    "birthday",
    "locale",
    "timezone",
    "home_store_id",
    "region",
    "attributes",
    "enrolled_channel",
    "enrolled_store_id",
    "merged_into_id",
    "created_at",
    "updated_at",
    "erased_at",
]


# The name export and erase steps used before the merge rule had its module.
same_person_ids = history_member_ids


def export_member(member_id: int, *, now: datetime) -> dict[str, Any]:
    """Everything stored about the member (following merges), as JSON-able data."""
    member = get_member(member_id)
    ids = history_member_ids(member.id)

    def rows(model: Any, column: Any, names: list[str]) -> list[dict[str, Any]]:
        query = sa.select(model).where(column.in_(ids)).order_by(model.id)
        return [_row(obj, names) for obj in db.session.scalars(query)]

    tier = db.session.get(Tier, member.tier_id) if member.tier_id else None
    merged = [db.session.get(Member, other) for other in ids[1:]]
    return {
        "exported_at": now.isoformat(),
        "member": {**_row(member, PROFILE), "tier": tier.code if tier else None},
        "identities": rows(
            MemberIdentity, MemberIdentity.member_id, ["kind", "value", "created_at"]
        ),
        "merged_members": [_row(other, PROFILE) for other in merged if other is not None],
        "balance": vars(member_balance(member.id)),
        "ledger_transactions": rows(
            LedgerTransaction,
            LedgerTransaction.member_id,
            [
                "id",
                "member_id",
                "kind",
                "cause_type",
                "cause_ref",
                "amount",
                "reverses_id",
                "actor",
                "reason",
                "details",
                "created_at",
            ],
        ),
        "point_lots": rows(
            PointLot,
            PointLot.member_id,
            [
                "id",
                "status",
                "amount",
                "remaining",
                "earned_at",
                "available_at",
                "expires_at",
                "cause_type",
                "cause_ref",
            ],
        ),
        "point_holds": rows(
            PointHold,
            PointHold.member_id,
            [
                "id",
                "store_id",
                "reference",
                "amount",
                "captured",
                "status",
                "expires_at",
                "created_at",
                "closed_at",
            ],
        ),
        "merges": [
            _row(merge, ["survivor_id", "merged_id", "actor", "reason", "summary", "created_at"])
            for merge in db.session.scalars(
                sa.select(MemberMerge)
                .where(sa.or_(MemberMerge.survivor_id.in_(ids), MemberMerge.merged_id.in_(ids)))
                .order_by(MemberMerge.id)
            )
        ],
        "sections": {name: func(member.id) for name, func in sorted(_export_sections.items())},
    }


def erase_member(member_id: int, *, now: datetime, actor: str) -> dict[str, Any]:
    """Remove the member's personal data; the ledger and its totals stay untouched.

    Emits member.erased (without personal data). Erasing twice is refused.
    """
    member = lock_current_member(member_id)
    if member.status in {MemberStatus.ERASED, MemberStatus.MERGED}:
        raise MemberNotActive(f"member {member.id} is already {member.status}")
    ids = history_member_ids(member.id)
    identities = db.session.execute(
        sa.delete(MemberIdentity).where(MemberIdentity.member_id.in_(ids))
    ).rowcount
    for person in db.session.scalars(sa.select(Member).where(Member.id.in_(ids))):
        person.name = None
        person.birthday = None
        person.attributes = {}
        person.erased_at = now
        person.updated_at = now
        db.session.expire(person, ["identities"])
    member.status = MemberStatus.ERASED.value
    summary: dict[str, Any] = {"member_ids": ids, "identities_deleted": identities or 0}
    for name, step in sorted(_erase_steps.items()):
        summary[name] = step(member.id, now)
    db.session.flush()
    outbox.emit(
        "member.erased",
        member_id=member.id,
        payload={"member_id": member.id, "merged_member_ids": ids[1:], "actor": actor},
        now=now,
    )
    return summary


# --- the erase steps of the shared core and the members domain ------------------------------


def erase_idempotent_responses(member_id: int, now: datetime) -> dict[str, Any]:
    """Stored responses of writes that concerned the person (or were made with their
    token) are blanked: replaying a profile change must not return the erased name."""
    from loyalty import idempotency

    return {"responses_blanked": idempotency.blank_for_members(same_person_ids(member_id), now)}


def erase_merge_reasons(member_id: int, now: datetime) -> dict[str, Any]:
    """A merge's reason is support's free text ("same person: Jane Doe, two emails"); the
    audit row (who merged which ids, when, what moved) stays."""
    ids = same_person_ids(member_id)
    result = db.session.execute(
        sa.update(MemberMerge)
        .where(
            sa.or_(MemberMerge.survivor_id.in_(ids), MemberMerge.merged_id.in_(ids)),
            MemberMerge.reason.is_not(None),
        )
        .values(reason=None)
    )
    return {"merge_reasons_blanked": result.rowcount or 0}


register_erase_step("idempotency", erase_idempotent_responses)
register_erase_step("member_merges", erase_merge_reasons)
