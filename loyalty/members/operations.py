"""Member operations: enrol, find by any identity, resolve merged ids."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty import outbox
from loyalty.db import db
from loyalty.errors import Conflict, InvalidInput, NotFound
from loyalty.ledger.operations import open_member_accounts
from loyalty.members.identities import normalise
from loyalty.members.models import IdentityKind, Member, MemberIdentity, MemberStatus


def find_member_by_identity(
    kind: str, value: str, *, default_region: str | None = None
) -> Member | None:
    canonical = normalise(kind, value, default_region=default_region)
    member = db.session.scalar(
        sa.select(Member)
        .join(MemberIdentity, MemberIdentity.member_id == Member.id)
        .where(MemberIdentity.kind == kind, MemberIdentity.value == canonical)
    )
    return resolve(member) if member is not None else None


def resolve(member: Member) -> Member:
    """Follow merges to the surviving member."""
    seen = set()
    while member.status == MemberStatus.MERGED and member.merged_into_id is not None:
        if member.id in seen:
            raise Conflict("merge cycle")
        seen.add(member.id)
        member = db.session.get(Member, member.merged_into_id)  # type: ignore[assignment]
    return member


def get_member(member_id: int) -> Member:
    member = db.session.get(Member, member_id)
    if member is None:
        raise NotFound(f"no member {member_id}")
    return resolve(member)


def enrol_member(
    *,
    identities: Mapping[str, str],
    now: datetime,
    channel: str | None = None,
    store_id: str | None = None,
    profile: Mapping[str, Any] | None = None,
    default_region: str | None = None,
) -> Member:
    """Create a member with its identities and ledger accounts; emits member.enrolled.

    Raises Conflict when an identity already belongs to someone (callers that want
    "find or enrol" use `find_or_enrol`).
    """
    canonical = _canonical_identities(identities, default_region)
    if not canonical:
        raise InvalidInput("a member needs at least one identity (phone, email, app_user, card)")
    profile = dict(profile or {})
    member = Member(
        status=MemberStatus.ACTIVE.value,
        name=profile.pop("name", None),
        birthday=profile.pop("birthday", None),
        locale=profile.pop("locale", None) or "en",
        timezone=profile.pop("timezone", None) or "UTC",
        home_store_id=profile.pop("home_store_id", None) or store_id,
        region=profile.pop("region", None),
        attributes=profile.pop("attributes", None) or {},
        enrolled_channel=channel,
        enrolled_store_id=store_id,
        created_at=now,
        updated_at=now,
    )
    if profile:
        raise InvalidInput(f"unknown profile field(s): {', '.join(sorted(profile))}")
    db.session.add(member)
    db.session.flush()
    _attach_identities(member, canonical, now)
    open_member_accounts(member.id)
    outbox.emit(
        "member.enrolled",
        member_id=member.id,
        payload={"member_id": member.id, "channel": channel, "store_id": store_id},
        now=now,
    )
    return member


def find_or_enrol(
    *,
    identities: Mapping[str, str],
    now: datetime,
    channel: str | None = None,
    store_id: str | None = None,
    default_region: str | None = None,
) -> tuple[Member, bool]:
    """Enrol anywhere: the member owning any of these identities, or a new one.

    Concurrent first orders for the same new phone number race on the identity's unique
    index; the loser's savepoint rolls back and it finds the winner's member.
    """
    canonical = _canonical_identities(identities, default_region)
    existing = _owner_of_any(canonical)
    if existing is not None:
        return resolve(existing), False
    try:
        with db.session.begin_nested():
            return enrol_member(
                identities=canonical, now=now, channel=channel, store_id=store_id
            ), True
    except sa.exc.IntegrityError:
        existing = _owner_of_any(canonical)
        if existing is None:
            raise
        return resolve(existing), False


def _canonical_identities(
    identities: Mapping[str, str], default_region: str | None
) -> dict[str, str]:
    canonical = {}
    for kind, value in identities.items():
        if value is None:
            continue
        if kind not in {k.value for k in IdentityKind}:
            raise InvalidInput(f"unknown identity kind {kind!r}")
        canonical[kind] = normalise(kind, value, default_region=default_region)
    return canonical


def _owner_of_any(canonical: Mapping[str, str]) -> Member | None:
    if not canonical:
        return None
    conditions = [
        sa.and_(MemberIdentity.kind == kind, MemberIdentity.value == value)
        for kind, value in canonical.items()
    ]
    return db.session.scalar(
        sa.select(Member)
        .join(MemberIdentity, MemberIdentity.member_id == Member.id)
        .where(sa.or_(*conditions))
        .order_by(Member.id)
        .limit(1)
    )


def _attach_identities(member: Member, canonical: Mapping[str, str], now: datetime) -> None:
    taken = _owner_of_any(canonical)
    if taken is not None and taken.id != member.id:
        raise Conflict("an identity already belongs to another member", member_id=None)
    for kind, value in canonical.items():
        db.session.add(MemberIdentity(member_id=member.id, kind=kind, value=value, created_at=now))
    db.session.flush()
