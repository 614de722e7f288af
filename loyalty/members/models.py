from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from loyalty.db import BigInt, JSONType, MetadataJSON, UTCDateTime, db, month_day


class MemberStatus(enum.StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"  # can't earn or spend until unblocked
    MERGED = "merged"  # folded into `merged_into_id`; its id resolves to the survivor
    ERASED = "erased"  # personal data removed; ledger totals kept


class IdentityKind(enum.StrEnum):
    PHONE = "phone"  # E.164
    EMAIL = "email"  # lower-cased, trimmed
    APP_USER = "app_user"  # the app backend's user id
    CARD = "card"  # loyalty card number


class Member(db.Model):
    __tablename__ = "members"
    __table_args__ = (
        sa.CheckConstraint(
            "(status = 'merged') = (merged_into_id IS NOT NULL)", name="merged_has_survivor"
        ),
        # A person's history ids: the survivor and every member merged into it.
        sa.Index("ix_members_merged_into_id", "merged_into_id"),
        # The integrator's own customer id: one member per id in the program.
        sa.Index("uq_members_external_id", "external_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(16), default=MemberStatus.ACTIVE)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    birthday: Mapped[date | None] = mapped_column(sa.Date)
    locale: Mapped[str] = mapped_column(sa.String(16), default="en")
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    home_store_id: Mapped[str | None] = mapped_column(sa.ForeignKey("stores.id"))
    region: Mapped[str | None] = mapped_column(sa.String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The integrator's customer id (addressable as `ext:<id>` wherever a path names a
    # member) and their own key-value data (`metadata`, JSON text: kept exactly as sent).
    external_id: Mapped[str | None] = mapped_column(sa.String(128))
    extra: Mapped[dict[str, Any] | None] = mapped_column("metadata", MetadataJSON)
    tier_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tiers.id"))
    enrolled_channel: Mapped[str | None] = mapped_column(sa.String(16))
    enrolled_store_id: Mapped[str | None] = mapped_column(sa.ForeignKey("stores.id"))
    merged_into_id: Mapped[int | None] = mapped_column(sa.ForeignKey("members.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped when the member is blocked or erased: app tokens carry the epoch they were
    # minted under and stop working once it changes (loyalty.auth.tokens).
    token_epoch: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")

    identities: Mapped[list[MemberIdentity]] = relationship(
        back_populates="member", order_by="MemberIdentity.id"
    )
    tier: Mapped[Any] = relationship("Tier", viewonly=True)

    @property
    def tier_code(self) -> str | None:
        return self.tier.code if self.tier is not None else None

    @property
    def is_active(self) -> bool:
        return self.status == MemberStatus.ACTIVE


# The birthday journeys' hourly scan reads the members born on three calendar days
# (campaigns.triggers.birthdays_chunk), never the whole table.
BIRTHDAY_DAY_INDEX = sa.Index(
    "ix_members_birthday_day",
    month_day(Member.__table__.c.birthday),
    postgresql_where=sa.text("birthday IS NOT NULL"),
    sqlite_where=sa.text("birthday IS NOT NULL"),
)


class MemberIdentity(db.Model):
    """One way to recognise a member. Each (kind, value) belongs to exactly one member."""

    __tablename__ = "member_identities"
    __table_args__ = (sa.UniqueConstraint("kind", "value"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    value: Mapped[str] = mapped_column(sa.String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    member: Mapped[Member] = relationship(back_populates="identities")


# --- which members a unit of work touched --------------------------------------------------
#
# A write's stored idempotent response may carry a member's personal data (loyalty.http),
# so the write edge asks which members the session loaded or created. Every response that
# shows a member's data had to load that member (or their identity) through the ORM first.

SEEN_MEMBERS = "omniloyal.members_seen"


def watch_members(session: Any) -> None:
    """Start noting the members `session` loads or creates (a write edge calls this; jobs
    that walk millions of members never do, so nothing grows there)."""
    session.info[SEEN_MEMBERS] = set()


def members_seen(session: Any) -> set[int]:
    """Stop watching; the ids of the people (a merged member counts as whom it was merged
    into) the session loaded or created since `watch_members`."""
    return set(session.info.pop(SEEN_MEMBERS, ()))


def _saw(session: Any, member_id: int | None) -> None:
    if session is not None and member_id is not None:
        seen = session.info.get(SEEN_MEMBERS)
        if seen is not None:
            seen.add(member_id)


@sa.event.listens_for(Member, "load")
@sa.event.listens_for(Member, "refresh")
def _member_loaded(member: Member, context: Any, *_: Any) -> None:
    # From the loaded state only: touching an unloaded attribute here would load it.
    state = sa.inspect(member)
    # A bulk UPDATE that synchronises loaded objects refreshes them with no query context.
    session = context.session if context is not None else state.session
    _saw(session, state.dict.get("merged_into_id") or state.dict.get("id"))


@sa.event.listens_for(MemberIdentity, "load")
def _identity_loaded(identity: MemberIdentity, context: Any) -> None:
    _saw(context.session, identity.member_id)


@sa.event.listens_for(Member, "after_insert")
@sa.event.listens_for(MemberIdentity, "after_insert")
def _created(_mapper: Any, _connection: Any, target: Any) -> None:
    _saw(sa.orm.object_session(target), getattr(target, "member_id", None) or target.id)


def people_now(member_ids: set[int]) -> set[int]:
    """The same ids with each merged member replaced by whom it was merged into, now."""
    people = set(member_ids)
    for _ in range(8):  # merge chains are short; each round follows one step
        merged = dict(
            db.session.execute(
                sa.select(Member.id, Member.merged_into_id).where(
                    Member.id.in_(people), Member.merged_into_id.is_not(None)
                )
            ).all()
        )
        if not merged:
            break
        people = {merged.get(member_id, member_id) for member_id in people}
    return people


class MemberMerge(db.Model):
    """Audit of a merge: who folded which member into which, and what moved."""

    __tablename__ = "member_merges"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    survivor_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), index=True)
    merged_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), unique=True)
    actor: Mapped[str] = mapped_column(sa.String(200))
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MemberImport(db.Model):
    """One CSV row imported into a member (the import's idempotency and resume record).

    The unique (batch, external_id) makes re-running a file, or resuming it after a crash,
    skip rows that were already committed.
    """

    __tablename__ = "member_imports"
    __table_args__ = (sa.UniqueConstraint("batch", "external_id"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    batch: Mapped[str] = mapped_column(sa.String(64))
    external_id: Mapped[str] = mapped_column(sa.String(128))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), index=True)
    opening_points: Mapped[int] = mapped_column(BigInt, default=0)
    # Count toward tier qualification as if earned on the import day (the tier window runs
    # from `imported_at`); the CSV's qualifying_points column, or the opening points.
    qualifying_points: Mapped[int] = mapped_column(BigInt, default=0, server_default="0")
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime)
