"""Member login by one-time code: request a code for a phone number or an email address,
verify it, get a member token (see docs/architecture.md, "Member login by one-time code").

- **A code proves control of the identity, and only that.** Verifying logs into the member
  who owns that exact phone number or email now; when nobody owns it, a new member is
  enrolled with it ("enrol anywhere"). A code never attaches an identity to an existing
  member, so it can't take over anyone else's account. Asking for a code answers the same
  whether the identity is known or not (no enumeration).
- **Codes**: 6 digits from `secrets`, valid OMNILOYAL_LOGIN_CODE_TTL seconds, only the latest
  code of a destination counts, at most OMNILOYAL_LOGIN_CODE_MAX_ATTEMPTS guesses (a CHECK
  in the database; the row is locked while a guess is counted), compared in constant time,
  used once. Stored as an HMAC digest (SECRET_KEY, salted per code); the destination as an
  HMAC digest too. The SMS or email text carries the code, the stored message a placeholder.
- **Sending limits**, fixed windows in Redis, checked in this order, each refusal a 429:
  per client IP, per destination, and for SMS per destination country calling code per
  hour (SMS pumping: fraudsters request codes to premium numbers of one country). Redis
  unreachable: refused with a 503 (fail closed: every SMS costs money).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import phonenumbers
import redis
import sqlalchemy as sa
from limits import parse_many

from loyalty.auth.tokens import MintedToken, mint_member_token
from loyalty.db import db
from loyalty.errors import (
    MemberNotActive,
    NotAuthenticated,
    RateLimited,
    ServiceUnavailable,
)
from loyalty.members.identities import normalise
from loyalty.members.models import IdentityKind, Member
from loyalty.members.operations import find_or_enrol
from notifications.consent import Purpose
from notifications.login_codes.models import LoginCode
from notifications.models import Message
from notifications.pipeline import outgoing_hook, queue_message
from notifications.providers.base import Channel, OutgoingMessage

log = logging.getLogger(__name__)

TEMPLATE = "login_code"
CODE_DIGITS = 6
# What the stored message shows instead of the code: as long as the code and GSM-7 (so
# the SMS segment count of the stored text is the real one).
PLACEHOLDER = "#" * CODE_DIGITS
KEY_PREFIX = "omniloyal:login-code"
ENROL_CHANNEL = "app"


@dataclass(frozen=True)
class Settings:
    """The login-code settings an operation needs (from loyalty.config.Settings)."""

    secret_key: str
    ttl_seconds: int
    max_attempts: int
    default_region: str | None
    per_destination: str
    per_ip: str
    country_caps: dict[str, int]


def settings_from(settings: Any) -> Settings:
    return Settings(
        secret_key=settings.secret_key,
        ttl_seconds=settings.login_code_ttl_seconds,
        max_attempts=settings.login_code_max_attempts,
        default_region=settings.login_code_default_region,
        per_destination=settings.login_code_per_destination,
        per_ip=settings.login_code_per_ip,
        country_caps=settings.login_code_country_caps,
    )


@dataclass(frozen=True)
class Destination:
    channel: Channel
    kind: IdentityKind
    value: str  # E.164 or a normalised email
    country_code: int | None  # SMS only


def destination(*, phone: str | None, email: str | None, default_region: str | None) -> Destination:
    if phone is not None:
        value = normalise(IdentityKind.PHONE, phone, default_region=default_region)
        country = phonenumbers.parse(value).country_code
        return Destination(Channel.SMS, IdentityKind.PHONE, value, country)
    assert email is not None  # the schema requires one of the two
    return Destination(
        Channel.EMAIL, IdentityKind.EMAIL, normalise(IdentityKind.EMAIL, email), None
    )


def _mac(key: str, *parts: object) -> str:
    message = ":".join(str(part) for part in parts).encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def _destination_digest(config: Settings, target: Destination) -> str:
    return _mac(config.secret_key, "login-destination", target.kind.value, target.value)


def _code_digest(config: Settings, nonce: str, code: str) -> str:
    return _mac(config.secret_key, "login-code", nonce, code)


# --- sending limits ---------------------------------------------------------------------------


def _within(connection: redis.Redis, key: str, limit: str, now: datetime) -> int | None:
    """Count one hit against every window of `limit`; None if within, else the seconds
    until the window that refused resets."""
    stamp = now.timestamp()
    for item in parse_many(limit):
        window = item.get_expiry()
        slot = int(stamp // window)
        counter = f"{KEY_PREFIX}:{key}:{window}:{slot}"
        pipe = connection.pipeline()
        pipe.incr(counter)
        pipe.expire(counter, window * 2)
        count, _ = pipe.execute()
        if count > item.amount:
            return max(1, math.ceil((slot + 1) * window - stamp))
    return None


def _country_cap(config: Settings, country_code: int) -> int:
    return config.country_caps.get(str(country_code), config.country_caps["*"])


def check_sending_limits(
    connection: redis.Redis, config: Settings, target: Destination, *, ip: str, now: datetime
) -> None:
    """RateLimited (429) past a limit; ServiceUnavailable (503) when Redis doesn't answer."""
    checks = [
        (f"ip:{ip}", config.per_ip, "this address asked for too many codes"),
        (
            f"to:{_destination_digest(config, target)}",
            config.per_destination,
            "too many codes were sent to this destination",
        ),
    ]
    if target.country_code is not None:
        cap = _country_cap(config, target.country_code)
        checks.append(
            (
                f"country:{target.country_code}",
                f"{cap}/hour",
                f"too many codes were sent to +{target.country_code} numbers this hour",
            )
        )
    try:
        for key, limit, why in checks:
            retry_after = _within(connection, key, limit, now)
            if retry_after is not None:
                log.warning("login code refused: %s", why if "country" in key else key[:3])
                raise RateLimited(f"{why}; retry after {retry_after} s", retry_after=retry_after)
    except redis.RedisError:
        raise ServiceUnavailable(
            "login codes are unavailable for a moment; retry", retry_after=5
        ) from None


def check_verify_limit(
    connection: redis.Redis, config: Settings, *, ip: str, now: datetime
) -> None:
    try:
        retry_after = _within(connection, f"verify-ip:{ip}", config.per_ip, now)
    except redis.RedisError:
        raise ServiceUnavailable(
            "login is unavailable for a moment; retry", retry_after=5
        ) from None
    if retry_after is not None:
        raise RateLimited(
            f"too many codes tried from this address; retry after {retry_after} s",
            retry_after=retry_after,
        )


# --- request ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requested:
    channel: Channel
    expires_at: datetime


def _pad(config: Settings, code_id: int, nonce: str) -> int:
    """A one-time pad for one code: 256 bits of HMAC reduced to the code's range (bias
    below 2^-230)."""
    return int(_mac(config.secret_key, "login-code-seal", code_id, nonce), 16) % 10**CODE_DIGITS


def _seal(config: Settings, code_id: int, nonce: str, code: str) -> str:
    """The code, one-time-padded with a key only SECRET_KEY derives: what the queued
    message carries, so the database never holds a usable code."""
    return f"{(int(code) + _pad(config, code_id, nonce)) % 10**CODE_DIGITS:0{CODE_DIGITS}d}"


def _unseal(config: Settings, code_id: int, nonce: str, sealed: str) -> str:
    return f"{(int(sealed) - _pad(config, code_id, nonce)) % 10**CODE_DIGITS:0{CODE_DIGITS}d}"


def request_code(config: Settings, target: Destination, *, now: datetime) -> Requested:
    """Create a code and queue its SMS or email in the caller's transaction (no commit).
    The caller checked the sending limits first."""
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    nonce = secrets.token_hex(16)
    expires_at = now + timedelta(seconds=config.ttl_seconds)
    row = LoginCode(
        channel=target.channel.value,
        destination_digest=_destination_digest(config, target),
        nonce=nonce,
        code_digest=_code_digest(config, nonce, code),
        attempts=0,
        max_attempts=config.max_attempts,
        created_at=now,
        expires_at=expires_at,
    )
    db.session.add(row)
    db.session.flush()
    owner = _owner(target)
    queue_message(
        member_id=owner.id if owner is not None else None,
        channel=target.channel,
        template=TEMPLATE,
        purpose=Purpose.TRANSACTIONAL,
        dedupe_key=f"login_code:{row.id}",
        variables={
            "code": PLACEHOLDER,
            "ttl_minutes": max(1, config.ttl_seconds // 60),
            "login_code_id": row.id,
            "sealed_code": _seal(config, row.id, nonce, code),
        },
        now=now,
        destination=target.value,
    )
    return Requested(target.channel, expires_at)


def _owner(target: Destination) -> Member | None:
    from loyalty.members.operations import find_member_by_identity

    return find_member_by_identity(target.kind.value, target.value)


def fill_in_code(config: Settings, message: Message, outgoing: OutgoingMessage) -> OutgoingMessage:
    """Put the real code where the rendered text has the placeholder, just before the
    provider call (the stored message keeps the placeholder)."""
    if message.template != TEMPLATE:
        return outgoing
    variables = message.variables or {}
    code_id, sealed = variables.get("login_code_id"), variables.get("sealed_code")
    nonce = db.session.scalar(sa.select(LoginCode.nonce).where(LoginCode.id == code_id))
    if nonce is None or not isinstance(sealed, str):
        return outgoing  # purged: the code is long dead, the placeholder goes out
    code = _unseal(config, code_id, nonce, sealed)
    return replace(
        outgoing,
        text=outgoing.text.replace(PLACEHOLDER, code),
        html=outgoing.html.replace(PLACEHOLDER, code) if outgoing.html else outgoing.html,
    )


@outgoing_hook
def _fill_in_code(message: Message, outgoing: OutgoingMessage) -> OutgoingMessage:
    from flask import current_app

    return fill_in_code(
        settings_from(current_app.extensions["omniloyal.settings"]), message, outgoing
    )


# --- verify -----------------------------------------------------------------------------------


class CodeRejected(NotAuthenticated):
    """Wrong, expired, used up or superseded code (one answer for all: no oracle)."""

    slug, title = "login-code-invalid", "Code not valid"


def check_code(config: Settings, target: Destination, code: str, *, now: datetime) -> bool:
    """Count one guess against the destination's latest live code and say whether it
    matched (no commit: the caller commits the guess whatever the answer)."""
    row = db.session.scalar(
        sa.select(LoginCode)
        .where(
            LoginCode.destination_digest == _destination_digest(config, target),
            LoginCode.channel == target.channel.value,
        )
        .order_by(LoginCode.id.desc())
        .limit(1)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None or row.used_at is not None or row.expires_at <= now:
        return False
    if row.attempts >= row.max_attempts:
        return False
    row.attempts += 1
    matched = hmac.compare_digest(_code_digest(config, row.nonce, code), row.code_digest)
    if matched:
        row.used_at = now
    db.session.flush()
    return matched


@dataclass(frozen=True)
class LoggedIn:
    member: Member
    enrolled: bool
    token: MintedToken


def log_in(target: Destination, *, issued_by_client: int, now: datetime) -> LoggedIn:
    """After a matching code: the owner of the identity, or a new member enrolled with it,
    and a member token minted for the app's key (no commit)."""
    member, enrolled = find_or_enrol(
        identities={target.kind.value: target.value}, now=now, channel=ENROL_CHANNEL
    )
    if not member.is_active:
        raise MemberNotActive(f"member {member.id} is {member.status}")
    token = mint_member_token(
        member.id, issued_by_client=issued_by_client, epoch=member.token_epoch, now=now
    )
    return LoggedIn(member, enrolled, token)


def purge_expired(now: datetime, *, limit: int = 5000) -> int:
    """Delete up to `limit` codes that expired more than a day ago (no commit)."""
    table = LoginCode.__table__
    due = (
        sa.select(table.c.id)
        .where(table.c.expires_at < now - timedelta(days=1))
        .order_by(table.c.expires_at)
        .limit(limit)
    )
    return db.session.execute(sa.delete(table).where(table.c.id.in_(due))).rowcount or 0
