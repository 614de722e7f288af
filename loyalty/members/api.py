"""Members API: enrol or find (POS, web shop), identify at the till, support's tools
(profile, identities, block, search, merge, privacy), and the member's own profile."""

from __future__ import annotations

from typing import Any

from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import Caller, current_caller, ensure_store, requires, requires_member
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import InvalidInput
from loyalty.http import write_endpoint
from loyalty.ledger.operations import member_balance
from loyalty.members import operations, resolution
from loyalty.members.identities import phone_region
from loyalty.members.merge import merge_members
from loyalty.members.models import IdentityKind
from loyalty.members.privacy import erase_member, export_member
from loyalty.members.schemas import (
    IDENTITY_KINDS,
    BlockRequestSchema,
    EnrolRequestSchema,
    EnrolResultSchema,
    ErasureSchema,
    ExportSchema,
    IdentifyRequestSchema,
    IdentifyResultSchema,
    IdentityCreateSchema,
    IdentityDeleteQuery,
    IdentitySchema,
    MemberListSchema,
    MemberSchema,
    MergeRequestSchema,
    MergeSchema,
    ProfileResponseSchema,
    ProfileSchema,
    SearchQuery,
    SelfProfileSchema,
)
from loyalty.pagination import page_of
from loyalty.stores.models import Channel

blp = Blueprint("members", __name__, description="Members: enrol, identify, profiles, merges")


def _default_region(caller: Caller, given: str | None, store_id: str | None = None) -> str | None:
    """The region for phone numbers without a country code (one rule: `phone_region`):
    as given, else the store's (the request's, else the key's), else the program's."""
    return phone_region(given=given, store_id=store_id or caller.store_id)


# --- POS, web shop, app backend -------------------------------------------------------------


@blp.route("/members", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.MEMBERS_WRITE)
@write_endpoint()
@blp.arguments(EnrolRequestSchema)
@blp.response(201, EnrolResultSchema)
@blp.alt_response(200, schema=EnrolResultSchema, description="an existing member was found")
def enrol(data: dict[str, Any]) -> Any:
    """Enrol anywhere: the member owning any of these identities (200), or a new one (201).

    The profile is used only for a new member.
    """
    caller = current_caller()
    store_id = data["store_id"] or caller.store_id
    ensure_store(caller, store_id)
    if data["channel"] and Channel(data["channel"]).needs_store and store_id is None:
        raise InvalidInput(f"channel {data['channel']} needs a store_id", field="store_id")
    member, created = operations.find_or_enrol(
        identities=data["identities"],
        now=utcnow(),
        channel=data["channel"],
        store_id=store_id,
        default_region=_default_region(caller, data["default_region"], store_id),
        profile=data["profile"],
        external_id=data["external_id"],
    )
    return {"created": created, "member": member}, 201 if created else 200


@blp.route("/members/identify", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.MEMBERS_READ)
@blp.arguments(IdentifyRequestSchema)
@blp.response(200, IdentifyResultSchema)
def identify(data: dict[str, Any]) -> Any:
    """Find the member behind a scanned QR code, phone, email, card or app user id.

    Answers only about the member found: never which other identities they have.
    """
    kind = next(k for k in ("qr_token", *IDENTITY_KINDS, "external_id") if data.get(k) is not None)
    member = operations.identify_member(
        kind,
        data[kind],
        now=utcnow(),
        default_region=_default_region(current_caller(), data["default_region"]),
    )
    result = {"member": member, "balance": member_balance(member.id)}
    if kind == "qr_token":
        # The QR token's one use was recorded in this transaction: this edge commits it
        # (otherwise a read; a failed look-up records nothing).
        db.session.commit()
    return result


# --- support (admin) ------------------------------------------------------------------------


@blp.route("/members/search")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@blp.arguments(SearchQuery, location="query")
@blp.response(200, MemberListSchema)
def search(query: dict[str, Any]) -> Any:
    """Find a member by any one identity or the external id (following merges); an empty
    list when nobody."""
    kind = next(k for k in (*IDENTITY_KINDS, "external_id") if query.get(k) is not None)
    items = operations.search_members(
        kind, query[kind], default_region=_default_region(current_caller(), query["default_region"])
    )
    return page_of(items, cursor=query["cursor"], limit=query["limit"], key=lambda m: m.id)


@blp.route("/members/<member:member_id>")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@blp.response(200, MemberSchema)
def get_member(member_id: int) -> Any:
    """A member's profile and identities. A merged id answers with the survivor."""
    return resolution.get_member(member_id)


@blp.route("/members/<member:member_id>", methods=["PATCH"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(ProfileSchema)
@blp.response(200, MemberSchema)
def update_member(changes: dict[str, Any], member_id: int) -> Any:
    """Change the profile fields given (null clears an optional one)."""
    return operations.update_profile(member_id, changes, now=utcnow(), actor=current_caller().actor)


@blp.route("/members/<member:member_id>/identities", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(IdentityCreateSchema)
@blp.response(201, IdentitySchema)
def add_identity(data: dict[str, Any], member_id: int) -> Any:
    """Attach an identity; one owned by another member is a 409 (merge them instead)."""
    return operations.add_identity(
        member_id,
        data["kind"],
        data["value"],
        now=utcnow(),
        actor=current_caller().actor,
        default_region=_default_region(current_caller(), data["default_region"]),
    )


@blp.route("/members/<member:member_id>/identities/<kind>", methods=["DELETE"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(IdentityDeleteQuery, location="query")
@blp.response(200, MemberSchema)
def remove_identity(query: dict[str, Any], member_id: int, kind: str) -> Any:
    """Detach an identity; the last one can't be removed."""
    if kind not in IDENTITY_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(IDENTITY_KINDS)}", field="kind")
    return operations.remove_identity(
        member_id,
        IdentityKind(kind),
        value=query["value"],
        now=utcnow(),
        actor=current_caller().actor,
    )


@blp.route("/members/<member:member_id>/block", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(BlockRequestSchema)
@blp.response(200, MemberSchema)
def block(data: dict[str, Any], member_id: int) -> Any:
    """Stop the member earning and spending until unblocked."""
    return operations.block_member(
        member_id, reason=data["reason"], now=utcnow(), actor=current_caller().actor
    )


@blp.route("/members/<member:member_id>/unblock", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.response(200, MemberSchema)
def unblock(member_id: int) -> Any:
    """Unblock a member: earning and spending work again (a no-op when active)."""
    return operations.unblock_member(member_id, now=utcnow(), actor=current_caller().actor)


@blp.route("/members/<member:survivor_id>/merge", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(MergeRequestSchema)
@blp.response(200, MergeSchema)
def merge(data: dict[str, Any], survivor_id: int) -> Any:
    """Fold a duplicate into this member: identities, points, lots and tier move here."""
    return merge_members(
        survivor_id,
        data["merged_member_id"],
        reason=data["reason"],
        now=utcnow(),
        actor=current_caller().actor,
    )


@blp.route("/members/<member:member_id>/export")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@blp.response(200, ExportSchema)
def export(member_id: int) -> Any:
    """Everything stored about the member, for a data subject access request."""
    return export_member(member_id, now=utcnow())


@blp.route("/members/<member:member_id>/erase", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.response(200, ErasureSchema)
def erase(member_id: int) -> Any:
    """Erase the member's personal data; points and ledger totals stay as they are."""
    now = utcnow()
    summary = erase_member(member_id, now=now, actor=current_caller().actor)
    return {"member_id": summary["member_ids"][0], "erased_at": now, "summary": summary}


# --- the member's own profile ---------------------------------------------------------------


@blp.route("/me/profile")
@blp.doc(security=[{"MemberToken": []}])
@requires_member
@blp.response(200, ProfileResponseSchema)
def my_profile() -> Any:
    """The member's own profile: name, contact details, preferences, consents."""
    return resolution.get_member(current_caller().member_id)


@blp.route("/me/profile", methods=["PATCH"])
@blp.doc(security=[{"MemberToken": []}])
@requires_member
@write_endpoint()
@blp.arguments(SelfProfileSchema)
@blp.response(200, ProfileResponseSchema)
def update_my_profile(changes: dict[str, Any]) -> Any:
    """Change your name, birthday (once), language, timezone or home store."""
    caller = current_caller()
    return operations.update_own_profile(
        caller.member_id, changes, now=utcnow(), actor=caller.actor
    )
