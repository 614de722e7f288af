"""Stores and channels (admin). A store-bound key sees only its own store."""

from __future__ import annotations

from typing import Any

from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import current_caller, requires
from loyalty.clock import utcnow
from loyalty.errors import Forbidden, NotFound
from loyalty.http import write_endpoint
from loyalty.pagination import PageQuery, page, page_of, page_schema
from loyalty.stores import operations
from loyalty.stores.models import Channel
from loyalty.stores.schemas import (
    ChannelSchema,
    StoreCreateSchema,
    StoreQuery,
    StoreSchema,
    StoreUpdateSchema,
)

blp = Blueprint("stores", __name__, description="Stores and sales channels")


def _refuse_store_bound_writes() -> None:
    if current_caller().store_id is not None:
        raise Forbidden("a store-bound key cannot manage stores")


@blp.route("/stores", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(StoreCreateSchema)
@blp.response(201, StoreSchema)
def create_store(data: dict[str, Any]) -> Any:
    """Add a store (id = your store code)."""
    _refuse_store_bound_writes()
    return operations.create_store(data, now=utcnow())


@blp.route("/stores")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@blp.arguments(StoreQuery, location="query")
@blp.response(200, page_schema(StoreSchema))
def list_stores(query: dict[str, Any]) -> Any:
    """List stores, by code (a store-bound key: only its own)."""
    filters = {name: query[name] for name in ("region", "active", "partner")}
    rows = operations.list_stores(
        **filters,
        only=current_caller().store_id,
        after=query["cursor"],
        limit=query["limit"] + 1,
    )
    return page(rows, query["limit"], key=lambda store: store.id)


@blp.route("/stores/<store_id>")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@blp.response(200, StoreSchema)
def get_store(store_id: str) -> Any:
    """Get a store by its code (a store-bound key: only its own; others answer 404)."""
    if not current_caller().may_act_for_store(store_id):
        raise NotFound(f"no store {store_id!r}")  # other owners' objects answer 404
    return operations.get_store(store_id)


@blp.route("/stores/<store_id>", methods=["PATCH"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(StoreUpdateSchema)
@blp.response(200, StoreSchema)
def update_store(changes: dict[str, Any], store_id: str) -> Any:
    """Change the fields given; the id never changes."""
    _refuse_store_bound_writes()
    return operations.update_store(store_id, changes, now=utcnow())


@blp.route("/channels")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@blp.arguments(PageQuery, location="query")
@blp.response(200, page_schema(ChannelSchema))
def list_channels(query: dict[str, Any]) -> Any:
    """List the sales channels orders and enrolments name."""
    channels = [{"code": c.value, "needs_store": c.needs_store} for c in Channel]
    return page_of(channels, cursor=query["cursor"], limit=query["limit"], key=lambda c: c["code"])
