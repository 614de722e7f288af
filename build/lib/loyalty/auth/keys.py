"""Creating and checking API keys: `olk_<prefix>_<secret>`, stored as a SHA-256 digest.

Key owners are cached per process (loyalty.cache, 5 s TTL) because every API request looks
its key up. Revoking a key in this process refuses it at once; another process (gunicorn
worker) may still accept it for up to the TTL.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from loyalty.auth import scopes as all_scopes
from loyalty.auth.models import ApiClient
from loyalty.cache import TTLCache
from loyalty.db import db
from loyalty.errors import Forbidden, InvalidInput, NotFound

KEY_PREFIX = "olk_"


@dataclass(frozen=True)
class IssuedKey:
    client: ApiClient
    key: str  # shown once, never stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Minter:
    """The reach of the key creating another key: what it may hand on."""

    scopes: frozenset[str]
    store_id: str | None  # bound to this store: it mints keys bound to it only


def create_api_client(
    *,
    name: str,
    scopes: list[str],
    store_id: str | None,
    now: datetime,
    minted_by: Minter | None = None,
) -> IssuedKey:
    """Create a client and its key. `minted_by` (None: the CLI, an operator) limits the new
    key to the minting key's own scopes and store binding, so no key can widen its reach
    by minting another (a store's admin key could otherwise mint an unbound one)."""
    unknown = set(scopes) - all_scopes.ALL
    if unknown:
        raise InvalidInput(f"unknown scope(s): {', '.join(sorted(unknown))}")
    if minted_by is not None:
        _ensure_within_reach(minted_by, set(scopes), store_id)
    if store_id is not None:
        from loyalty.stores.models import Store

        if db.session.get(Store, store_id) is None:
            raise InvalidInput(f"no store {store_id!r}")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    client = ApiClient(
        name=name,
        key_prefix=prefix,
        key_digest=_digest(secret),
        scopes=sorted(set(scopes)),
        store_id=store_id,
        active=True,
        created_at=now,
    )
    db.session.add(client)
    db.session.flush()
    return IssuedKey(client, f"{KEY_PREFIX}{prefix}_{secret}")


def _ensure_within_reach(minter: Minter, scopes: set[str], store_id: str | None) -> None:
    wider = scopes - minter.scopes
    if wider:
        raise Forbidden(
            f"a key can't grant scopes it doesn't hold: {', '.join(sorted(wider))}",
            reason="scope_not_held",
        )
    if minter.store_id is not None and store_id != minter.store_id:
        raise Forbidden(
            f"this key is bound to store {minter.store_id!r}; it mints keys bound to that "
            "store only",
            reason="store_binding",
        )


def revoke_api_client(client_id: int, *, now: datetime, store_id: str | None = None) -> ApiClient:
    """Revoke a key. With `store_id` (a store-bound caller) only that store's keys."""
    client = db.session.get(ApiClient, client_id)
    if client is None or (store_id is not None and client.store_id != store_id):
        raise NotFound(f"no API client {client_id}")
    client.active = False
    client.revoked_at = now
    db.session.flush()
    return client


@dataclass(frozen=True)
class KeyOwner:
    """What a request needs to know about the client owning a key (a cached snapshot)."""

    id: int
    name: str
    scopes: frozenset[str]
    store_id: str | None
    active: bool
    key_digest: str


# Every API request looks its key up: the owners are cached per process for a few seconds.
# Revoking a key (any ORM write to api_clients) clears this process's cache at once; other
# processes stop accepting the key within loyalty.cache.DEFAULT_TTL_SECONDS.
# An unknown prefix is not remembered, so a key created in another process works at once.
_owners_by_prefix: TTLCache[KeyOwner | None] = TTLCache(
    "API key owners", models=(ApiClient,), cache_none=False
)


def _load_owner(prefix: str) -> KeyOwner | None:
    row = db.session.execute(
        sa.select(
            ApiClient.id,
            ApiClient.name,
            ApiClient.scopes,
            ApiClient.store_id,
            ApiClient.active,
            ApiClient.key_digest,
        ).where(ApiClient.key_prefix == prefix)
    ).first()
    if row is None:
        return None
    return KeyOwner(
        row.id, row.name, frozenset(row.scopes), row.store_id, row.active, row.key_digest
    )


def client_for_key(key: str) -> KeyOwner | None:
    """The active client owning `key`, or None. Constant-time on the secret part.

    Owners are cached per process for a few seconds (see `_owners_by_prefix`).
    """
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, _, secret = key.removeprefix(KEY_PREFIX).partition("_")
    if not prefix or not secret:
        return None
    client = _owners_by_prefix.get(prefix, lambda: _load_owner(prefix))
    if client is None or not client.active:
        return None
    if not hmac.compare_digest(client.key_digest, _digest(secret)):
        return None
    return client
