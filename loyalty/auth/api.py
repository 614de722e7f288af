"""API clients (admin) and member tokens (minted by the trusted app backend)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import current_caller, requires
from loyalty.auth.keys import Minter, create_api_client, revoke_api_client
from loyalty.auth.models import ApiClient
from loyalty.auth.schemas import (
    ApiClientCreatedSchema,
    ApiClientCreateSchema,
    ApiClientSchema,
    MemberTokenRequestSchema,
    MemberTokenSchema,
)
from loyalty.auth.tokens import mint_member_token, revoke_member_tokens
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import MemberNotActive, NotFound
from loyalty.http import write_endpoint
from loyalty.members.models import IdentityKind
from loyalty.members.operations import find_member_by_identity
from loyalty.members.resolution import get_member
from loyalty.pagination import PageQuery, int_cursor, page, page_schema

blp = Blueprint("auth", __name__, description="API clients and member tokens")


@blp.route("/api-clients", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(ApiClientCreateSchema)
@blp.response(201, ApiClientCreatedSchema)
def create_client(data: dict[str, Any]) -> Any:
    """Create an API client. The key is in this response only.

    A key mints only keys within its own reach: scopes it holds itself, and, when it is
    bound to a store, only keys bound to that same store (403 otherwise)."""
    caller = current_caller()
    issued = create_api_client(
        name=data["name"],
        scopes=data["scopes"],
        store_id=data["store_id"],
        now=utcnow(),
        minted_by=Minter(scopes=caller.scopes, store_id=caller.store_id),
    )
    issued.client.key = issued.key  # type: ignore[attr-defined]
    return issued.client


@blp.route("/api-clients")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@blp.arguments(PageQuery, location="query")
@blp.response(200, page_schema(ApiClientSchema))
def list_clients(query: dict[str, Any]) -> Any:
    """List API clients, oldest first; a store-bound admin key sees its own store's only."""
    select = sa.select(ApiClient).order_by(ApiClient.id).limit(query["limit"] + 1)
    after = int_cursor(query["cursor"])
    if after is not None:
        select = select.where(ApiClient.id > after)
    store_id = current_caller().store_id
    if store_id is not None:
        select = select.where(ApiClient.store_id == store_id)
    return page(db.session.scalars(select).all(), query["limit"], key=lambda c: c.id)


@blp.route("/api-clients/<int:client_id>/revoke", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint(key_required=False)
@blp.response(200, ApiClientSchema)
def revoke_client(client_id: int) -> Any:
    """Revoke a key; requests with it get 401 from then on (other server processes cache
    keys for up to 5 seconds, so there it may take that long). Member tokens the client
    minted stop working with it. A store-bound admin key revokes its own store's keys only;
    others answer 404."""
    return revoke_api_client(client_id, now=utcnow(), store_id=current_caller().store_id)


@blp.route("/member-tokens", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.MEMBER_TOKENS)
@blp.arguments(MemberTokenRequestSchema)
@blp.response(201, MemberTokenSchema)
def issue_member_token(data: dict[str, Any]) -> Any:
    """Mint a short-lived member token for the app backend's logged-in user."""
    if data["member_id"] is not None:
        member = get_member(data["member_id"])
    else:
        member = find_member_by_identity(IdentityKind.APP_USER, data["app_user"])
        if member is None:
            raise NotFound("no member with that app user id")
    if not member.is_active:
        raise MemberNotActive(f"member {member.id} is {member.status}")
    client_id = current_caller().client_id
    assert client_id is not None  # @requires: an API client
    minted = mint_member_token(
        member.id, issued_by_client=client_id, epoch=member.token_epoch, now=utcnow()
    )
    return {"token": minted.token, "member_id": member.id, "expires_at": minted.expires_at}


def _register_member_hooks() -> None:
    """Erasing a member revokes their app tokens (blocking does it in block_member)."""
    from loyalty.members import privacy

    privacy.register_erase_step("member_tokens", revoke_member_tokens)


_register_member_hooks()
