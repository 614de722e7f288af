"""Store operations: the retailer's own and partner stores, keyed by the retailer's code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty.cache import TTLCache
from loyalty.db import db
from loyalty.errors import Conflict, InvalidInput, NotFound
from loyalty.stores.models import Store

UPDATABLE = frozenset({"name", "region", "country", "timezone", "partner", "active"})


def create_store(data: Mapping[str, Any], *, now: datetime) -> Store:
    """Add a store; its id is the retailer's own store code and never changes."""
    if db.session.get(Store, data["id"]) is not None:
        raise Conflict(f"store {data['id']!r} already exists")
    store = Store(**{name: data[name] for name in UPDATABLE | {"id"}}, created_at=now)
    db.session.add(store)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except sa.exc.IntegrityError:  # a concurrent create of the same code won
        raise Conflict(f"store {data['id']!r} already exists") from None
    return store


def update_store(store_id: str, changes: Mapping[str, Any], *, now: datetime) -> Store:
    store = get_store(store_id)
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise InvalidInput(f"unknown store field(s): {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        setattr(store, name, value)
    store.updated_at = now
    db.session.flush()
    return store


def get_store(store_id: str) -> Store:
    store = db.session.get(Store, store_id)
    if store is None:
        raise NotFound(f"no store {store_id!r}")
    return store


def list_stores(
    *,
    region: str | None = None,
    active: bool | None = None,
    partner: bool | None = None,
    only: str | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[Store]:
    """Stores by code; `only` restricts the list to one store (a store-bound caller).
    `after` and `limit` page by code (keyset)."""
    query = sa.select(Store).order_by(Store.id)
    if after is not None:
        query = query.where(Store.id > after)
    if limit is not None:
        query = query.limit(limit)
    if region is not None:
        query = query.where(Store.region == region)
    if active is not None:
        query = query.where(Store.active.is_(active))
    if partner is not None:
        query = query.where(Store.partner.is_(partner))
    if only is not None:
        query = query.where(Store.id == only)
    return list(db.session.scalars(query))


def require_store(store_id: str | None, *, field: str = "store_id") -> Store | None:
    """The store named in input, or a per-field InvalidInput (a missing FK is the caller's
    mistake, never a 500)."""
    if store_id is None:
        return None
    store = db.session.get(Store, store_id)
    if store is None:
        raise InvalidInput(f"no store {store_id!r}", field=field)
    return store


@dataclass(frozen=True)
class StoreSnapshot:
    """What orders and redemptions read about a store (a cached copy, not an ORM object)."""

    id: str
    active: bool
    region: str | None


# Read on every order: cached per process (see loyalty.cache; a store written in this process
# clears it at once, other processes see the change within the TTL). An unknown store is not
# remembered, so a store created in another process can be used at once.
_store_cache: TTLCache[StoreSnapshot | None] = TTLCache("stores", models=(Store,), cache_none=False)


def cached_store(store_id: str) -> StoreSnapshot | None:
    """The store as a snapshot, or None when there is no such store."""
    return _store_cache.get(store_id, lambda: _load_store_snapshot(store_id))


def _load_store_snapshot(store_id: str) -> StoreSnapshot | None:
    row = db.session.execute(
        sa.select(Store.id, Store.active, Store.region).where(Store.id == store_id)
    ).first()
    return StoreSnapshot(*row) if row is not None else None
