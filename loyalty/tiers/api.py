"""Tiers HTTP API (admin) and the member app's home call, GET /v1/me."""

from __future__ import annotations

from typing import Any

from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import current_caller, requires, requires_member
from loyalty.clock import utcnow
from loyalty.http import write_endpoint
from loyalty.ledger.operations import member_balance
from loyalty.members.resolution import get_member
from loyalty.pagination import PageQuery, page_of
from loyalty.tiers import operations
from loyalty.tiers.schemas import (
    MeSchema,
    TierCreateSchema,
    TierListSchema,
    TierSchema,
    TierUpdateSchema,
)

blp = Blueprint("tiers", __name__, description="Tiers, and the member app's home call")


@blp.route("/me")
@blp.doc(security=[{"MemberToken": []}])
@requires_member
@blp.response(200, MeSchema)
def me() -> Any:
    """The app's home screen: who I am, my tier and progress to the next, my points.

    A handful of indexed queries: the member, the tiers, one qualifying sum, the balance.
    """
    member = get_member(current_caller().member_id)  # type: ignore[arg-type]
    now = utcnow()
    progress = operations.tier_progress(member.id, now, current_tier_id=member.tier_id)
    return {
        "member_id": member.id,
        "name": member.name,
        "timezone": member.timezone,
        "locale": member.locale,
        "tier": progress,
        "balance": member_balance(member.id),
    }


@blp.route("/tiers")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@blp.arguments(PageQuery, location="query")
@blp.response(200, TierListSchema)
def list_tiers(query: dict[str, Any]) -> Any:
    """List the tiers, entry tier first."""
    tiers = operations.list_tiers()
    return page_of(tiers, cursor=query["cursor"], limit=query["limit"], key=lambda t: t.rank)


@blp.route("/tiers", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(TierCreateSchema)
@blp.response(201, TierSchema)
def create_tier(data: dict[str, Any]) -> Any:
    """Add a tier: threshold on qualifying points or net spend over a rolling window."""
    return operations.create_tier(data, now=utcnow())


@blp.route("/tiers/<int:tier_id>")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@blp.response(200, TierSchema)
def get_tier(tier_id: int) -> Any:
    """Get a tier."""
    return operations.get_tier(tier_id)


@blp.route("/tiers/<int:tier_id>", methods=["PATCH"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(TierUpdateSchema)
@blp.response(200, TierSchema)
def update_tier(data: dict[str, Any], tier_id: int) -> Any:
    """Change a tier; members move at their next earning (up) or the daily evaluation."""
    return operations.update_tier(tier_id, data, now=utcnow())


@blp.route("/tiers/<int:tier_id>", methods=["DELETE"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.response(204)
def delete_tier(tier_id: int) -> None:
    """Remove a tier that no member holds."""
    operations.delete_tier(tier_id)


def _register_member_hooks() -> None:
    """Erasure accounts for the member's tier (loyalty.tiers.privacy)."""
    from loyalty.members import privacy
    from loyalty.tiers.privacy import erase_member_tier

    privacy.register_erase_step("tiers", erase_member_tier)


_register_member_hooks()
