"""Short-lived signed tokens for members: app tokens and rotating QR codes for the till.

A trusted app backend (scope member-tokens:issue) mints an app token for its logged-in user;
the app then calls the member API with it. The member's app shows a QR token that a POS
resolves to the member; it lives for a couple of minutes, carries a nonce, and is good for
one use at a till: the first identify or order that names it records it as used.

An app token names its member, the API client that minted it and the member's token epoch.
Every request checks, with one indexed join, that the issuing client is still active
(revoking the app backend's key revokes its tokens) and that the member is neither blocked
nor erased and still has that epoch (blocking or erasing a member bumps it, so the member's
earlier tokens stay dead even after an unblock).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from loyalty.auth.models import ApiClient, UsedQrToken
from loyalty.db import db, upsert_insert
from loyalty.errors import NotAuthenticated

APP_TOKEN_PREFIX = "omt_"
QR_TOKEN_PREFIX = "omq_"
# A member in these states has no working token (merged members' tokens follow the merge).
REVOKED_STATUSES = frozenset({"blocked", "erased"})


@dataclass(frozen=True)
class MintedToken:
    token: str
    expires_at: datetime


def _serializer(salt: str) -> URLSafeTimedSerializer:
    secret = current_app.config["SECRET_KEY"]
    if not secret:  # a maintenance command started without one (see loyalty.config)
        from loyalty.config import ConfigError

        raise ConfigError("SECRET_KEY is not set: this process can't sign or check tokens")
    return URLSafeTimedSerializer(secret, salt=salt)


def _settings():  # type: ignore[no-untyped-def]
    return current_app.extensions["omniloyal.settings"]


def mint_member_token(
    member_id: int, *, issued_by_client: int, epoch: int, now: datetime
) -> MintedToken:
    """An app token for the member, valid while the issuing client is active and the
    member's token epoch is still `epoch` (pass `member.token_epoch`)."""
    ttl = _settings().member_token_ttl_seconds
    payload = {"m": member_id, "c": issued_by_client, "e": epoch}
    token = _serializer("member-app").dumps(payload)
    return MintedToken(APP_TOKEN_PREFIX + token, now + timedelta(seconds=ttl))


def member_id_from_token(token: str) -> int:
    """The member of a valid, unrevoked app token; NotAuthenticated (401) otherwise."""
    return token_holder(token)[0]


def token_holder(token: str) -> tuple[int, int]:
    """The member of a valid, unrevoked app token and the person it belongs to now (its
    survivor after a merge; read in the same statement); NotAuthenticated (401) otherwise.
    Counters kept per member (rate limits, guess lockouts) count per person, so a token
    minted before a merge shares them with the survivor's own tokens."""
    payload, _issued = _load(
        token, APP_TOKEN_PREFIX, "member-app", _settings().member_token_ttl_seconds
    )
    member_id, client_id, epoch = payload["m"], payload.get("c"), payload.get("e", 0)
    if not isinstance(client_id, int) or not isinstance(epoch, int):
        raise NotAuthenticated("member token is not valid")
    row = _token_holder(member_id, client_id)
    if row is None or row.client_active is not True:
        raise NotAuthenticated("member token revoked: the app that issued it was revoked")
    if row.status in REVOKED_STATUSES or row.token_epoch != epoch:
        raise NotAuthenticated("member token revoked; sign in again")
    return member_id, row.person_id


def _token_holder(member_id: int, client_id: int) -> Any:
    params = {"member_id": member_id, "client_id": client_id}
    if db.engine.dialect.name == "postgresql" and not db.session().in_transaction():
        # Authentication runs before the handler opens a transaction: one autocommit
        # statement on its own pooled connection (no BEGIN/ROLLBACK round trips), so a
        # read-only handler such as /me/balance can still run its own single statement.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            return connection.execute(_holder_query(), params).first()
    return db.session.execute(_holder_query(), params).first()


@cache
def _holder_query() -> sa.Select[Any]:
    """The member's status and token epoch with the issuing client's state: two primary
    key look-ups in one statement (the member app's balance call pays only this)."""
    from loyalty.members.models import Member

    members, clients = Member.__table__, ApiClient.__table__
    return (
        sa.select(
            members.c.status,
            members.c.token_epoch,
            # merges repoint earlier merges: one hop names the person (resolution.py)
            sa.func.coalesce(members.c.merged_into_id, members.c.id).label("person_id"),
            clients.c.active.label("client_active"),
        )
        .select_from(members.outerjoin(clients, clients.c.id == sa.bindparam("client_id")))
        .where(members.c.id == sa.bindparam("member_id"))
    )


def mint_member_qr(member_id: int, *, now: datetime) -> MintedToken:
    ttl = _settings().member_qr_ttl_seconds
    token = _serializer("member-qr").dumps({"m": member_id, "n": secrets.token_hex(8)})
    return MintedToken(QR_TOKEN_PREFIX + token, now + timedelta(seconds=ttl))


def use_member_qr(token: str, *, now: datetime) -> int:
    """The member behind a QR token, recording its one use at a till.

    The use is a row in `used_member_qr_tokens` inserted in the caller's transaction (ON
    CONFLICT DO NOTHING on its primary key): a token seen before is refused, and of two
    concurrent uses the second waits on the key until the first commits, then is refused;
    if the first rolls back (the order failed), the code is still good. The key is derived
    from what the signature covers (member, nonce, issue time), not from the token's text.
    """
    ttl = _settings().member_qr_ttl_seconds
    payload, issued = _load(token, QR_TOKEN_PREFIX, "member-qr", ttl)
    nonce = payload.get("n")
    if not isinstance(nonce, str):
        raise NotAuthenticated("member token is not valid")
    member_id = payload["m"]
    digest = hashlib.sha256(f"{member_id}:{nonce}:{issued.timestamp()}".encode()).hexdigest()
    table = UsedQrToken.__table__
    recorded = db.session.execute(
        upsert_insert(table)
        .values(
            digest=digest,
            member_id=member_id,
            used_at=now,
            # Kept past the token's own expiry (clock skew between servers), then purged.
            expires_at=issued + timedelta(seconds=ttl) + timedelta(minutes=5),
        )
        .on_conflict_do_nothing(index_elements=["digest"])
        .returning(table.c.digest)
    ).scalar()
    if recorded is None:
        raise NotAuthenticated("member code already used; show a fresh one")
    return member_id


def purge_used_qr_tokens(now: datetime, *, limit: int = 10_000) -> int:
    """Delete up to `limit` use records of QR tokens that have expired anyway."""
    table = UsedQrToken.__table__
    due = sa.select(table.c.digest).where(table.c.expires_at < now).limit(limit)
    return db.session.execute(sa.delete(table).where(table.c.digest.in_(due))).rowcount or 0


def _load(token: str, prefix: str, salt: str, max_age: int) -> tuple[dict[str, Any], datetime]:
    if not token.startswith(prefix):
        raise NotAuthenticated("malformed member token")
    try:
        payload, issued = _serializer(salt).loads(
            token.removeprefix(prefix), max_age=max_age, return_timestamp=True
        )
    except SignatureExpired:
        raise NotAuthenticated("member token expired") from None
    except BadSignature:
        raise NotAuthenticated("member token is not valid") from None
    member_id = payload.get("m") if isinstance(payload, dict) else None
    if not isinstance(member_id, int) or isinstance(member_id, bool):
        raise NotAuthenticated("member token is not valid")
    return payload, issued


def revoke_member_tokens(member_id: int, _now: datetime | None = None) -> dict[str, Any]:
    """Bump the token epoch of the member and of every member merged into it: each app
    token minted before stops working. Called when a member is blocked or erased (also
    registered as an erase step, hence the `(member_id, now) -> summary` signature)."""
    from loyalty.members.models import Member
    from loyalty.members.resolution import history_member_ids

    ids = history_member_ids(member_id)
    db.session.execute(
        sa.update(Member)
        .where(Member.id.in_(ids))
        .values(token_epoch=Member.token_epoch + 1)
        .execution_options(synchronize_session="fetch")
    )
    return {"token_epochs_bumped": len(ids)}
