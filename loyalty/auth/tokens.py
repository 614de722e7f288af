"""Short-lived signed tokens for members: app tokens and rotating QR codes for the till.

A trusted app backend (scope member-tokens:issue) mints an app token for its logged-in user;
the app then calls the member API with it. The member's app shows a QR token that a POS
resolves to the member; it lives for a couple of minutes and carries a nonce, so each one
shown is different and a screenshot soon stops working.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from loyalty.errors import NotAuthenticated

APP_TOKEN_PREFIX = "omt_"
QR_TOKEN_PREFIX = "omq_"


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


def mint_member_token(member_id: int, *, issued_by_client: int, now: datetime) -> MintedToken:
    ttl = _settings().member_token_ttl_seconds
    token = _serializer("member-app").dumps({"m": member_id, "c": issued_by_client})
    return MintedToken(APP_TOKEN_PREFIX + token, now + timedelta(seconds=ttl))


def member_id_from_token(token: str) -> int:
    return _load(token, APP_TOKEN_PREFIX, "member-app", _settings().member_token_ttl_seconds)


def mint_member_qr(member_id: int, *, now: datetime) -> MintedToken:
    ttl = _settings().member_qr_ttl_seconds
    token = _serializer("member-qr").dumps({"m": member_id, "n": secrets.token_hex(4)})
    return MintedToken(QR_TOKEN_PREFIX + token, now + timedelta(seconds=ttl))


def member_id_from_qr(token: str) -> int:
    return _load(token, QR_TOKEN_PREFIX, "member-qr", _settings().member_qr_ttl_seconds)


def _load(token: str, prefix: str, salt: str, max_age: int) -> int:
    if not token.startswith(prefix):
        raise NotAuthenticated("malformed member token")
    try:
        payload = _serializer(salt).loads(token.removeprefix(prefix), max_age=max_age)
    except SignatureExpired:
        raise NotAuthenticated("member token expired") from None
    except BadSignature:
        raise NotAuthenticated("member token is not valid") from None
    member_id = payload.get("m") if isinstance(payload, dict) else None
    if not isinstance(member_id, int):
        raise NotAuthenticated("member token is not valid")
    return member_id
