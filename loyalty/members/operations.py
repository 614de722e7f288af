"""Member operations: enrol, find by any identity, resolve merged ids, change profiles,
identities and status. Merges live in merge.py, export and erasure in privacy.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty import outbox
from loyalty.db import any_of, db
from loyalty.errors import Conflict, InvalidInput, MemberNotActive, NotFound
from loyalty.ledger.operations import open_member_accounts
from loyalty.members.identities import normalise
from loyalty.members.models import IdentityKind, Member, MemberIdentity, MemberStatus
from loyalty.members.resolution import current_member, get_member, lock_current_member
from loyalty.stores.operations import require_store
from loyalty.timezones import validate_timezone


def find_member_by_identity(
    kind: str, value: str, *, default_region: str | None = None
) -> Member | None:
    canonical = normalise(kind, value, default_region=default_region)
    member = db.session.scalar(
        sa.select(Member)
        .join(MemberIdentity, MemberIdentity.member_id == Member.id)
        .where(MemberIdentity.kind == kind, MemberIdentity.value == canonical)
    )
    return current_member(member) if member is not None else None


def find_member_by_external_id(external_id: str) -> Member | None:
    """The member with the integrator's customer id `external_id` (merges followed), or None.

    A merge moves the external id to the survivor, so this is normally the person already.
    """
    member = db.session.scalar(sa.select(Member).where(Member.external_id == external_id))
    return current_member(member) if member is not None else None


def member_id_for_external_id(external_id: str) -> int | None:
    """Just the id (one indexed read): what a path's `ext:<id>` names."""
    return db.session.scalar(sa.select(Member.id).where(Member.external_id == external_id))


def member_ids_for_external_ids(external_ids: Sequence[str]) -> dict[str, int]:
    """`member_id_for_external_id` for many in one query: external id -> member id, for the
    ones that exist."""
    rows = db.session.execute(
        sa.select(Member.external_id, Member.id).where(any_of(Member.external_id, external_ids))
    )
    return {external_id: member_id for external_id, member_id in rows}


def enrol_member(
    *,
    identities: Mapping[str, str],
    now: datetime,
    channel: str | None = None,
    store_id: str | None = None,
    profile: Mapping[str, Any] | None = None,
    default_region: str | None = None,
    external_id: str | None = None,
) -> Member:
    """Create a member with its identities and ledger accounts; emits member.enrolled.

    Raises Conflict when an identity already belongs to someone (callers that want
    "find or enrol" use `find_or_enrol`).
    """
    canonical = _canonical_identities(identities, default_region)
    if not canonical:
        raise InvalidInput("a member needs at least one identity (phone, email, app_user, card)")
    profile = dict(profile or {})
    require_store(store_id)
    require_store(profile.get("home_store_id"), field="home_store_id")
    member = Member(
        status=MemberStatus.ACTIVE.value,
        name=profile.pop("name", None),
        birthday=profile.pop("birthday", None),
        locale=profile.pop("locale", None) or "en",
        timezone=profile.pop("timezone", None) or "UTC",
        home_store_id=profile.pop("home_store_id", None) or store_id,
        region=profile.pop("region", None),
        attributes=profile.pop("attributes", None) or {},
        external_id=profile.pop("external_id", None) or external_id,
        extra=profile.pop("metadata", None),
        enrolled_channel=channel,
        enrolled_store_id=store_id,
        created_at=now,
        updated_at=now,
    )
    if profile:
        raise InvalidInput(f"unknown profile field(s): {', '.join(sorted(profile))}")
    if member.external_id is not None and member_id_for_external_id(member.external_id):
        raise ExternalIdTaken(f"external id {member.external_id!r} belongs to another member")
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
    profile: Mapping[str, Any] | None = None,
    external_id: str | None = None,
    enrol: bool = True,
) -> tuple[Member, bool]:
    """Enrol anywhere: the member owning any of these identities, or a new one.

    `profile` is used only when a member is created; a found member's profile is left as it
    is (a till must not overwrite what the member told the app).
    Concurrent first orders for the same new phone number race on the identity's unique
    index; the loser's savepoint rolls back and it finds the winner's member.

    `external_id` (the integrator's customer id) finds its member first; a member found by
    an identity that has none gets it. With `enrol=False` nobody is created: an unknown
    member is a MemberNotFound (404).
    """
    canonical = _canonical_identities(identities, default_region)
    existing = _existing_person(canonical, external_id)
    if existing is not None:
        return _link_external_id(existing, external_id), False
    if not enrol:
        raise MemberNotFound("no member has these identities (enrol is false)")
    try:
        with db.session.begin_nested():
            return enrol_member(
                identities=canonical,
                now=now,
                channel=channel,
                store_id=store_id,
                profile=profile,
                external_id=external_id,
            ), True
    except (sa.exc.IntegrityError, IdentityTaken, ExternalIdTaken):
        # Another request enrolled the same person meanwhile: its member wins.
        existing = _existing_person(canonical, external_id)
        if existing is None:
            raise
        return _link_external_id(existing, external_id), False


def _existing_person(canonical: Mapping[str, str], external_id: str | None) -> Member | None:
    """The member these identities or this external id name (merges followed); a 409 when
    they name two different people."""
    by_identity = _owner_of_any(canonical)
    by_identity = current_member(by_identity) if by_identity is not None else None
    by_external = find_member_by_external_id(external_id) if external_id else None
    if by_external is not None and by_identity is not None and by_external.id != by_identity.id:
        raise ExternalIdTaken(
            f"external id {external_id!r} belongs to another member than these identities"
        )
    return by_external or by_identity


def _link_external_id(member: Member, external_id: str | None) -> Member:
    """Give a found member the integrator's id when it has none (a 409 if it has another)."""
    if external_id is None or member.external_id == external_id:
        return member
    if member.external_id is not None:
        raise ExternalIdTaken(
            f"the member already has external id {member.external_id!r}, not {external_id!r}"
        )
    locked = _lock_changeable(member.id)
    _set_external_id(locked, external_id)
    return locked


def _set_external_id(member: Member, external_id: str | None) -> None:
    """Set (or clear) the member's external id; taken by another member is a 409, also
    when a concurrent request took it first (the unique constraint decides)."""
    if external_id is not None:
        owner = member_id_for_external_id(external_id)
        if owner is not None and owner != member.id:
            raise ExternalIdTaken(f"external id {external_id!r} belongs to another member")
    try:
        with db.session.begin_nested():
            member.external_id = external_id
            db.session.flush()
    except sa.exc.IntegrityError:
        raise ExternalIdTaken(f"external id {external_id!r} belongs to another member") from None


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
        raise IdentityTaken("an identity already belongs to another member")
    for kind, value in canonical.items():
        db.session.add(MemberIdentity(member_id=member.id, kind=kind, value=value, created_at=now))
    db.session.flush()


# --- locking --------------------------------------------------------------------------------


def lock_members(*member_ids: int) -> dict[int, Member]:
    """SELECT ... FOR UPDATE the members, in id order (the order every caller uses, so two
    operations on the same pair can't deadlock). Raises NotFound for a missing id."""
    wanted = sorted(set(member_ids))
    rows = db.session.scalars(
        sa.select(Member)
        .where(Member.id.in_(wanted))
        .order_by(Member.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).all()
    found = {member.id: member for member in rows}
    for member_id in wanted:
        if member_id not in found:
            raise NotFound(f"no member {member_id}")
    return found


def _lock_changeable(member_id: int) -> Member:
    """The member (following merges, also one that commits while we wait for the lock),
    locked; erased members can't change any more."""
    member = lock_current_member(member_id)
    if member.status == MemberStatus.ERASED:
        raise MemberNotActive(f"member {member.id} was erased")
    return member


# --- profile --------------------------------------------------------------------------------

PROFILE_FIELDS = frozenset(
    {
        "name",
        "birthday",
        "locale",
        "timezone",
        "home_store_id",
        "region",
        "attributes",
        "external_id",
        "metadata",
    }
)
# Request names that aren't the model's attribute names.
_PROFILE_ATTRIBUTES = {"metadata": "extra"}
NOT_NULL_FIELDS = frozenset({"locale", "timezone", "attributes"})


def update_profile(
    member_id: int, changes: Mapping[str, Any], *, now: datetime, actor: str
) -> Member:
    """Change profile fields (only those given); emits member.updated naming the fields.

    Status, tier and identities have their own operations; they are not profile fields.
    """
    unknown = set(changes) - PROFILE_FIELDS
    if unknown:
        raise InvalidInput(f"not profile field(s): {', '.join(sorted(unknown))}")
    for name in NOT_NULL_FIELDS & set(changes):
        if changes[name] is None:
            raise InvalidInput(f"{name} can't be empty", field=name)
    if "timezone" in changes:
        validate_timezone(changes["timezone"])
    if "home_store_id" in changes:
        require_store(changes["home_store_id"], field="home_store_id")
    member = _lock_changeable(member_id)
    changed = sorted(
        name
        for name, value in changes.items()
        if getattr(member, _PROFILE_ATTRIBUTES.get(name, name)) != value
    )
    if not changed:
        return member
    for name in changed:
        if name == "external_id":
            _set_external_id(member, changes[name])
        else:
            setattr(member, _PROFILE_ATTRIBUTES.get(name, name), changes[name])
    _touched(member, now, actor, fields=changed)
    return member


SELF_SERVICE_FIELDS = frozenset({"name", "birthday", "locale", "timezone", "home_store_id"})


def update_own_profile(
    member_id: int, changes: Mapping[str, Any], *, now: datetime, actor: str
) -> Member:
    """The member changing their own profile: fewer fields, only while active, and a
    birthday only once (it triggers birthday rewards; support corrects mistakes)."""
    unknown = set(changes) - SELF_SERVICE_FIELDS
    if unknown:
        raise InvalidInput(f"you can't change {', '.join(sorted(unknown))}")
    member = get_member(member_id)
    if member.status != MemberStatus.ACTIVE:
        raise MemberNotActive(f"the membership is {member.status}")
    birthday = changes.get("birthday")
    if "birthday" in changes and member.birthday is not None and birthday != member.birthday:
        raise InvalidInput("the birthday is already set; support can correct it", field="birthday")
    return update_profile(member.id, changes, now=now, actor=actor)


def _touched(member: Member, now: datetime, actor: str, **payload: Any) -> None:
    member.updated_at = now
    db.session.flush()
    outbox.emit(
        "member.updated",
        member_id=member.id,
        payload={"member_id": member.id, "actor": actor, **payload},
        now=now,
    )


# --- identities -----------------------------------------------------------------------------


def add_identity(
    member_id: int,
    kind: str,
    value: str,
    *,
    now: datetime,
    actor: str,
    default_region: str | None = None,
) -> MemberIdentity:
    """Attach one more identity. One that belongs to another member is a Conflict (merge
    the two members instead); one the member already has is returned as it is."""
    canonical = normalise(kind, value, default_region=default_region)
    member = _lock_changeable(member_id)
    owner = _owner_of_any({kind: canonical})
    if owner is not None and owner.id != member.id:
        raise IdentityTaken(f"this {kind} belongs to another member; merge them instead")
    if owner is not None:
        return next(i for i in member.identities if i.kind == kind and i.value == canonical)
    identity = MemberIdentity(member_id=member.id, kind=kind, value=canonical, created_at=now)
    db.session.add(identity)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except sa.exc.IntegrityError:  # a concurrent enrolment took it first
        raise IdentityTaken(f"this {kind} belongs to another member") from None
    _touched(member, now, actor, identity_added=kind)
    return identity


def remove_identity(
    member_id: int, kind: str, *, now: datetime, actor: str, value: str | None = None
) -> Member:
    """Detach the member's identity of `kind` (the one with `value` when they have several).

    A member keeps at least one identity: otherwise nobody could find them again.
    """
    member = _lock_changeable(member_id)
    matching = [i for i in member.identities if i.kind == kind]
    if value is not None:
        canonical = normalise(kind, value)
        matching = [i for i in matching if i.value == canonical]
    if not matching:
        raise NotFound(f"member {member.id} has no such {kind} identity")
    if len(matching) > 1:
        raise InvalidInput(f"member {member.id} has several {kind} identities; give the value")
    if len(member.identities) == 1:
        raise Conflict("a member keeps at least one identity; add another one first")
    db.session.delete(matching[0])
    db.session.flush()
    db.session.expire(member, ["identities"])
    _touched(member, now, actor, identity_removed=kind)
    return member


# --- status ---------------------------------------------------------------------------------


def block_member(member_id: int, *, reason: str, now: datetime, actor: str) -> Member:
    """Block earning and spending (the ledger refuses non-active members). Idempotent."""
    member = _lock_changeable(member_id)
    if member.status == MemberStatus.BLOCKED:
        return member
    member.status = MemberStatus.BLOCKED.value
    member.updated_at = now
    db.session.flush()
    from loyalty.auth.tokens import revoke_member_tokens

    revoke_member_tokens(member.id)  # the member's app tokens stop working, even after unblock
    outbox.emit(
        "member.blocked",
        member_id=member.id,
        # Not the reason: free text may carry personal data, and events carry ids only.
        payload={"member_id": member.id, "actor": actor},
        now=now,
    )
    return member


def unblock_member(member_id: int, *, now: datetime, actor: str) -> Member:
    member = _lock_changeable(member_id)
    if member.status == MemberStatus.ACTIVE:
        return member
    member.status = MemberStatus.ACTIVE.value
    member.updated_at = now
    db.session.flush()
    outbox.emit(
        "member.unblocked",
        member_id=member.id,
        payload={"member_id": member.id, "actor": actor},
        now=now,
    )
    return member


# --- lookups --------------------------------------------------------------------------------


class IdentityTaken(Conflict):
    """The identity already belongs to another member."""

    slug, title = "identity-taken", "Identity belongs to another member"


class ExternalIdTaken(Conflict):
    """The external id (the integrator's customer id) already belongs to another member."""

    slug, title = "external-id-taken", "External id belongs to another member"


class MemberNotFound(NotFound):
    """No member matches, and the request said not to enrol one (`enrol: false`)."""

    slug, title = "member-not-found", "Member not found"


class MemberCodeInvalid(NotFound):
    """The member QR code is unknown, forged or expired; the member shows a fresh one."""

    slug, title = "member-code-invalid", "Member code not valid"


def identify_member(
    kind: str, value: str, *, now: datetime, default_region: str | None = None
) -> Member:
    """The active or blocked member behind one identity or a member QR token (POS lookup).

    Unknown, erased and forged all answer NotFound alike. A QR token is used up by this
    look-up (one use per token at a till; the caller commits): the till goes on with the
    member id it got back.
    """
    if kind == "qr_token":
        from loyalty.auth.tokens import use_member_qr
        from loyalty.errors import NotAuthenticated

        try:
            member: Member | None = get_member(use_member_qr(value, now=now))
        except NotAuthenticated as error:
            raise MemberCodeInvalid(
                f"the member code is not valid, has expired or was used ({error.detail})"
            ) from None
    elif kind == "external_id":
        member = find_member_by_external_id(value)
    else:
        member = find_member_by_identity(kind, value, default_region=default_region)
    if member is None or member.status in {MemberStatus.ERASED, MemberStatus.MERGED}:
        raise MemberNotFound("no member matches")
    return member


def search_members(kind: str, value: str, *, default_region: str | None = None) -> list[Member]:
    """Support's lookup by any identity or the external id: the member (following merges),
    or nobody."""
    if kind == "external_id":
        member = find_member_by_external_id(value)
    else:
        member = find_member_by_identity(kind, value, default_region=default_region)
    return [member] if member is not None else []
