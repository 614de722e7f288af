"""Consent and preferences, per member, channel and purpose, with their full history.

- Marketing needs an explicit, recorded opt-in per channel (with its source and time);
  without one nothing marketing goes out on that channel.
- Transactional messages (points earned, tier changed, a coupon issued, login codes) are
  on by default; a member may turn them off per channel (a preference), and a provider
  opt-out (SMS STOP, a hard unsubscribe) turns off both purposes on that channel.
- Every change appends a `consent_changes` row: who (actor), where (source and an optional
  place, e.g. the store), when, and what. The current state is one row per
  (member, channel, purpose), so `allows()` is one primary-key read.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, UTCDateTime, db, upsert_insert
from loyalty.errors import InvalidInput
from loyalty.members.models import Member, MemberStatus
from loyalty.members.resolution import current_member_id, history_member_ids, lock_current_member
from notifications.providers.base import Channel


class Purpose(enum.StrEnum):
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


class ConsentSource(enum.StrEnum):
    APP = "app"  # the member in the app (member token)
    STORE = "store"  # at the till, recorded by store staff
    WEB = "web"  # the web shop or the unsubscribe page
    IMPORT = "import"  # a migration from an earlier system
    PROVIDER = "provider"  # the provider told us (SMS STOP / START, unsubscribed address)
    MERGE = "merge"  # two members were merged: the history entry of the folded choice


class MemberConsent(db.Model):
    """The current consent of a member for one channel and purpose."""

    __tablename__ = "member_consents"

    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    purpose: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    granted: Mapped[bool] = mapped_column(sa.Boolean)
    source: Mapped[str] = mapped_column(sa.String(16))
    actor: Mapped[str] = mapped_column(sa.String(200))
    place: Mapped[str | None] = mapped_column(sa.String(100))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ConsentChange(db.Model):
    """One change of consent, kept: the history a data-protection officer asks for."""

    __tablename__ = "consent_changes"
    __table_args__ = (sa.Index("ix_consent_changes_member_id_id", "member_id", "id"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    channel: Mapped[str] = mapped_column(sa.String(16))
    purpose: Mapped[str] = mapped_column(sa.String(16))
    granted: Mapped[bool] = mapped_column(sa.Boolean)
    source: Mapped[str] = mapped_column(sa.String(16))
    actor: Mapped[str] = mapped_column(sa.String(200))
    place: Mapped[str | None] = mapped_column(sa.String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The wording agreed to (a grant over the API when a text is published; see
    # notifications/consent_texts.py). None: withdrawn, or no text was in force.
    text_id: Mapped[int | None] = mapped_column(BigInt, sa.ForeignKey("consent_texts.id"))


def _default(purpose: Purpose) -> bool:
    # Marketing is opt-in; transactional messages are part of the service (opt-out).
    return purpose is Purpose.TRANSACTIONAL


def allows(member_id: int, channel: Channel, purpose: Purpose) -> bool:
    """May we send `purpose` messages to this member on this channel now?

    Follows merges (the person behind the id); an unknown, blocked, merged-away or erased
    member gets nothing. One statement: it runs for every message sent."""
    channel, purpose = Channel(channel), Purpose(purpose)
    members = Member.__table__
    consents = MemberConsent.__table__
    person = sa.func.coalesce(
        sa.select(members.c.merged_into_id).where(members.c.id == member_id).scalar_subquery(),
        member_id,
    )
    row = db.session.execute(
        sa.select(members.c.status, consents.c.granted)
        .select_from(
            members.outerjoin(
                consents,
                sa.and_(
                    consents.c.member_id == members.c.id,
                    consents.c.channel == channel.value,
                    consents.c.purpose == purpose.value,
                ),
            )
        )
        .where(members.c.id == person)
    ).first()
    if row is None or row.status != MemberStatus.ACTIVE.value:
        return False
    return _default(purpose) if row.granted is None else bool(row.granted)


def granted_channels(person_id: int, purpose: Purpose) -> dict[str, bool]:
    """Per channel, whether `purpose` is allowed for this (current, active) person: one
    read for every channel (the outbox consumer asks for all of them per event)."""
    purpose = Purpose(purpose)
    table = MemberConsent.__table__
    explicit = dict(
        db.session.execute(
            sa.select(table.c.channel, table.c.granted).where(
                table.c.member_id == person_id, table.c.purpose == purpose.value
            )
        ).all()
    )
    return {c.value: bool(explicit.get(c.value, _default(purpose))) for c in Channel}


def record_consent(
    member_id: int,
    channel: Channel,
    purpose: Purpose,
    granted: bool,
    *,
    source: str,
    now: datetime,
    actor: str,
    place: str | None = None,
    text_id: int | None = None,
) -> None:
    """Set consent and append the change to its history (in the caller's transaction).
    `text_id`: the consent text the member agreed to (kept in the history only).

    A change to the same value is still recorded (a renewed opt-in is evidence too)."""
    try:
        source = ConsentSource(source).value
        channel, purpose = Channel(channel), Purpose(purpose)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    # The person's row is locked first (lock order step 2): a merge folding this member's
    # consents waits for us or we wait for it and follow it, so an opt-out is never
    # written to a member whose consents were already folded.
    person = lock_current_member(member_id).id
    values = {
        "granted": bool(granted),
        "source": source,
        "actor": actor[:200],
        "place": place[:100] if place else None,
    }
    statement = upsert_insert(MemberConsent.__table__).values(
        member_id=person, channel=channel.value, purpose=purpose.value, updated_at=now, **values
    )
    db.session.execute(
        statement.on_conflict_do_update(
            index_elements=["member_id", "channel", "purpose"],
            set_={**values, "updated_at": now},
        )
    )
    db.session.execute(
        sa.insert(ConsentChange.__table__).values(
            member_id=person,
            channel=channel.value,
            purpose=purpose.value,
            at=now,
            text_id=text_id,
            **values,
        )
    )


def preferences(member_id: int) -> list[dict[str, Any]]:
    """Every channel and purpose with its effective value and where it came from."""
    person = current_member_id(member_id)
    # Core rows, not ORM objects: record_consent writes with Core, so an identity-mapped
    # object loaded earlier in the transaction could be stale.
    table = MemberConsent.__table__
    rows = {
        (r.channel, r.purpose): r
        for r in db.session.execute(sa.select(table).where(table.c.member_id == person))
    }
    result = []
    for channel in Channel:
        for purpose in Purpose:
            row = rows.get((channel.value, purpose.value))
            result.append(
                {
                    "channel": channel.value,
                    "purpose": purpose.value,
                    "granted": _default(purpose) if row is None else row.granted,
                    "explicit": row is not None,
                    "source": row.source if row else None,
                    "updated_at": row.updated_at if row else None,
                }
            )
    return result


def history(member_id: int, *, after_id: int = 0, limit: int = 100) -> list[ConsentChange]:
    """The person's consent changes, oldest first (every id merged into them included)."""
    ids = history_member_ids(current_member_id(member_id))
    return list(
        db.session.scalars(
            sa.select(ConsentChange)
            .where(ConsentChange.member_id.in_(ids), ConsentChange.id > after_id)
            .order_by(ConsentChange.id)
            .limit(limit)
        )
    )


def merge_consents(merged_id: int, survivor_id: int, now: datetime) -> dict[str, Any]:
    """Merge step: fold the merged member's current consents into the survivor's.

    Per channel and purpose the most recent explicit choice wins (its time, source, actor
    and place are kept as they were); on a tie an opt-out wins. Both histories stay under
    the ids they were written with (`history()` reads the person's ids); each folded choice
    adds a `merge` entry to the survivor's history saying what the person's consent is now.
    Both members are locked by the merge, so a concurrent opt-out is folded or follows the
    merge (record_consent locks the person)."""
    table = MemberConsent.__table__
    rows = db.session.execute(
        sa.select(table).where(table.c.member_id.in_([merged_id, survivor_id]))
    ).all()
    theirs = {(r.channel, r.purpose): r for r in rows if r.member_id == merged_id}
    ours = {(r.channel, r.purpose): r for r in rows if r.member_id == survivor_id}
    taken = 0
    for key, row in sorted(theirs.items()):
        kept = ours.get(key)
        winner = row if kept is None or _newer_choice(row, kept) else kept
        values = {
            "granted": winner.granted, "source": winner.source, "actor": winner.actor,
            "place": winner.place, "updated_at": winner.updated_at,
        }  # fmt: skip
        if winner is row:
            taken += 1
            statement = upsert_insert(table).values(
                member_id=survivor_id, channel=key[0], purpose=key[1], **values
            )
            db.session.execute(
                statement.on_conflict_do_update(
                    index_elements=["member_id", "channel", "purpose"], set_=values
                )
            )
        db.session.execute(
            sa.insert(ConsentChange.__table__).values(
                member_id=survivor_id, channel=key[0], purpose=key[1],
                granted=winner.granted, source=ConsentSource.MERGE.value,
                actor=f"merge:{merged_id}->{survivor_id}",
                place=f"member {merged_id}" if winner is row else f"member {survivor_id}",
                at=now,
            )
        )  # fmt: skip
    db.session.execute(sa.delete(table).where(table.c.member_id == merged_id))
    return {"consents_folded": len(theirs), "consents_taken_from_merged": taken}


def _newer_choice(candidate: Any, kept: Any) -> bool:
    """Whether the merged member's choice beats the survivor's: later, or an opt-out at
    the same instant."""
    if candidate.updated_at != kept.updated_at:
        return bool(candidate.updated_at > kept.updated_at)
    return not candidate.granted and bool(kept.granted)
