"""Creating and checking API keys: `olk_<prefix>_<secret>`, stored as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from loyalty.auth import scopes as all_scopes
from loyalty.auth.models import ApiClient
from loyalty.db import db
from loyalty.errors import InvalidInput, NotFound

KEY_PREFIX = "olk_"


@dataclass(frozen=True)
class IssuedKey:
    client: ApiClient
    key: str  # shown once, never stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_client(
    *, name: str, scopes: list[str], store_id: str | None, now: datetime
) -> IssuedKey:
    unknown = set(scopes) - all_scopes.ALL
    if unknown:
        raise InvalidInput(f"unknown scope(s): {', '.join(sorted(unknown))}")
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


def revoke_api_client(client_id: int, *, now: datetime) -> ApiClient:
    client = db.session.get(ApiClient, client_id)
    if client is None:
        raise NotFound(f"no API client {client_id}")
    client.active = False
    client.revoked_at = now
    db.session.flush()
    return client


def client_for_key(key: str) -> ApiClient | None:
    """The active client owning `key`, or None. Constant-time on the secret part."""
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, _, secret = key.removeprefix(KEY_PREFIX).partition("_")
    if not prefix or not secret:
        return None
    client = db.session.scalar(sa.select(ApiClient).where(ApiClient.key_prefix == prefix))
    if client is None or not client.active:
        return None
    if not hmac.compare_digest(client.key_digest, _digest(secret)):
        return None
    return client
