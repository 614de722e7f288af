"""Journeys, store events and referrals in merges, erasure and exports.

Merge: the merged member's journey entries and reservations move to the survivor (an entry
of a journey the survivor is already active or held out in exits, a reservation for an event the
survivor also booked is cancelled and its place given back); referral codes, referrals and
marks stay under their ids and are read through the merge rule (history ids). Erasure
deletes the referral code and the digests, and exits the person's active entries so
nothing more is sent; entries, runs and reservations hold ids and times only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.journey_models import (
    EventReservation,
    JourneyEntry,
    JourneyStepRun,
    Referral,
    ReferralCode,
    ReferralMark,
    StoreEvent,
)
from loyalty.db import constant, db


def merge_journeys(merged_id: int, survivor_id: int, now: datetime) -> dict[str, Any]:
    entries = JourneyEntry.__table__
    # The survivor's ongoing passes: active, or held out in the journey's control group (the
    # person stays out of it: a merged-in active pass would message them).
    survivor_active = sa.select(entries.c.journey_id).where(
        entries.c.member_id == survivor_id,
        entries.c.status.in_([constant("active"), constant("held_out")]),
    )
    exited = db.session.execute(
        sa.update(entries)
        .where(
            entries.c.member_id == merged_id,
            entries.c.status == constant("active"),
            entries.c.journey_id.in_(survivor_active),
        )
        .values(status="exited", exit_reason="merged", next_run_at=None, updated_at=now)
    ).rowcount
    moved = db.session.execute(
        sa.update(entries).where(entries.c.member_id == merged_id).values(member_id=survivor_id)
    ).rowcount
    reservations = EventReservation.__table__
    both = sa.select(reservations.c.event_id).where(reservations.c.member_id == survivor_id)
    duplicates = db.session.execute(
        sa.select(reservations.c.id, reservations.c.event_id, reservations.c.status).where(
            reservations.c.member_id == merged_id, reservations.c.event_id.in_(both)
        )
    ).all()
    for row in sorted(duplicates, key=lambda r: r.event_id):
        if row.status == "reserved":
            db.session.execute(
                sa.update(reservations)
                .where(reservations.c.id == row.id)
                .values(status="cancelled")
            )
            db.session.execute(
                sa.update(StoreEvent.__table__)
                .where(StoreEvent.id == row.event_id)
                .values(reserved=StoreEvent.reserved - 1)
            )
    kept = {row.id for row in duplicates}
    moved_reservations = db.session.execute(
        sa.update(reservations)
        .where(reservations.c.member_id == merged_id, reservations.c.id.not_in(kept or {0}))
        .values(member_id=survivor_id)
    ).rowcount
    referrals = Referral.__table__
    doubled = db.session.execute(
        sa.update(referrals)
        .where(
            referrals.c.referee_id == merged_id,
            referrals.c.status == constant("pending"),
            sa.exists().where(referrals.c.referee_id == survivor_id),
        )
        .values(status="refused", reason="merged into a referred member", rewarded_at=now)
    ).rowcount
    return {
        "journey_entries_moved": moved,
        "journey_entries_exited": exited,
        "reservations_moved": moved_reservations,
        "reservations_cancelled": len([r for r in duplicates if r.status == "reserved"]),
        "referrals_refused": doubled,
    }


def _ids(member_id: int) -> list[int]:
    from loyalty.members.resolution import history_member_ids

    return history_member_ids(member_id)


def erase_journeys(member_id: int, now: datetime) -> dict[str, Any]:
    ids = _ids(member_id)
    entries = JourneyEntry.__table__
    exited = db.session.execute(
        sa.update(entries)
        .where(entries.c.member_id.in_(ids), entries.c.status == constant("active"))
        .values(status="exited", exit_reason="erased", next_run_at=None, updated_at=now)
    ).rowcount
    codes = db.session.execute(
        sa.delete(ReferralCode.__table__).where(ReferralCode.member_id.in_(ids))
    ).rowcount
    marks = db.session.execute(
        sa.delete(ReferralMark.__table__).where(ReferralMark.member_id.in_(ids))
    ).rowcount
    return {
        "journey_entries_exited": exited,
        "referral_codes_deleted": codes,
        "marks_deleted": marks,
    }


def export_journeys(member_id: int) -> dict[str, Any]:
    ids = _ids(member_id)
    entries = list(
        db.session.scalars(
            sa.select(JourneyEntry).where(JourneyEntry.member_id.in_(ids)).order_by(JourneyEntry.id)
        )
    )
    runs = (
        db.session.execute(
            sa.select(
                JourneyStepRun.entry_id,
                JourneyStepRun.step_index,
                JourneyStepRun.outcome,
                JourneyStepRun.ran_at,
            )
            .where(JourneyStepRun.entry_id.in_([e.id for e in entries]))
            .order_by(JourneyStepRun.id)
        ).all()
        if entries
        else []
    )
    reservations = db.session.scalars(
        sa.select(EventReservation)
        .where(EventReservation.member_id.in_(ids))
        .order_by(EventReservation.id)
    )
    code = db.session.scalar(sa.select(ReferralCode.code).where(ReferralCode.member_id.in_(ids)))
    referrals = db.session.scalars(
        sa.select(Referral)
        .where(sa.or_(Referral.referrer_id.in_(ids), Referral.referee_id.in_(ids)))
        .order_by(Referral.id)
    )
    return {
        "journey_entries": [
            {
                "journey_id": e.journey_id,
                "version": e.version,
                "status": e.status,
                "entered_at": e.entered_at.isoformat(),
                "steps": [
                    {
                        "step_index": r.step_index,
                        "outcome": r.outcome,
                        "ran_at": r.ran_at.isoformat(),
                    }
                    for r in runs
                    if r.entry_id == e.id
                ],
            }
            for e in entries
        ],
        "event_reservations": [
            {"event_id": r.event_id, "status": r.status, "reserved_at": r.reserved_at.isoformat()}
            for r in reservations
        ],
        "referral_code": code,
        "referrals": [
            {
                "role": "referee" if r.referee_id in ids else "referrer",
                "status": r.status,
                "created_at": r.created_at.isoformat(),
            }
            for r in referrals
        ],
    }


def register() -> None:
    from loyalty.members import merge, privacy

    merge.register_merge_step(merge_journeys)
    privacy.register_erase_step("journeys", erase_journeys)
    privacy.register_export_section("journeys", export_journeys)


register()
