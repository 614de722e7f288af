"""Dashboard users: create, authenticate (argon2 hashes, optional TOTP), change settings."""

from __future__ import annotations

from datetime import datetime

import pyotp
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from loyalty.dashboard.models import LOCALES, ROLES, DashboardUser
from loyalty.db import db
from loyalty.errors import Conflict, InvalidInput

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10
# Verifying against this keeps a login for an unknown email as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0000")


class UserExists(Conflict):
    """A dashboard user with this email exists already."""

    slug, title = "dashboard-user-exists", "Dashboard user exists"


def create_user(
    *, email: str, name: str, password: str, role: str, now: datetime, locale: str = "en"
) -> DashboardUser:
    email = email.strip().lower()
    if "@" not in email:
        raise InvalidInput("an email address is needed", field="email")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    if locale not in LOCALES:
        raise InvalidInput(f"locale must be one of {', '.join(LOCALES)}", field="locale")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    if db.session.scalar(sa.select(DashboardUser.id).where(DashboardUser.email == email)):
        raise UserExists(f"{email} already has a dashboard account")
    user = DashboardUser(
        email=email,
        name=name.strip() or email,
        password_hash=_hasher.hash(password),
        role=role,
        locale=locale,
        active=True,
        created_at=now,
    )
    db.session.add(user)
    db.session.flush()
    return user


def check_password(email: str, password: str) -> DashboardUser | None:
    """The active user with this email and password, else None (same cost either way)."""
    user = db.session.scalar(
        sa.select(DashboardUser).where(DashboardUser.email == email.strip().lower())
    )
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def check_totp(user: DashboardUser, code: str, now: datetime) -> bool:
    if user.totp_secret is None:
        return True
    return pyotp.TOTP(user.totp_secret).verify(code.strip(), for_time=now, valid_window=1)


def enable_totp(user: DashboardUser) -> str:
    """Turn TOTP on at once with a new secret, returned as a provisioning URI. Only for the
    `create-user --totp` bootstrap, where the person at the terminal is the user; the
    dashboard enrols in two steps (begin_totp, confirm_totp)."""
    user.totp_secret = pyotp.random_base32()
    user.totp_pending_secret = None
    return totp_uri(user, user.totp_secret)


def totp_uri(user: DashboardUser, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name="Omniloyal")


def begin_totp(user: DashboardUser) -> str:
    """Step 1 of enrolment: a new pending secret (not yet asked at sign-in). Returns it;
    the page shows it once, as text and as an otpauth URI. Refused while TOTP is on:
    replacing the secret needs turning it off first, which asks for a current code."""
    if user.totp_secret is not None:
        raise InvalidInput("two-step sign-in is on: turn it off first", field="code")
    user.totp_pending_secret = pyotp.random_base32()
    return user.totp_pending_secret


def confirm_totp(user: DashboardUser, code: str, now: datetime) -> None:
    """Step 2: a valid current code for the pending secret turns TOTP on. A wrong code
    changes nothing (the authenticator app was not set up with this secret)."""
    pending = user.totp_pending_secret
    if pending is None:
        raise InvalidInput("start the set-up first: no pending secret", field="code")
    if not pyotp.TOTP(pending).verify(code.strip(), for_time=now, valid_window=1):
        raise InvalidInput("that code is not valid for the new secret", field="code")
    user.totp_secret = pending
    user.totp_pending_secret = None


def disable_totp(user: DashboardUser, code: str, now: datetime) -> None:
    """Turn TOTP off; needs a valid current code (a stolen session alone can't)."""
    if user.totp_secret is None:
        raise InvalidInput("two-step sign-in is not on", field="code")
    if not check_totp(user, code, now):
        raise InvalidInput("that code is not valid", field="code")
    user.totp_secret = None
    user.totp_pending_secret = None


def set_locale(user: DashboardUser, locale: str) -> None:
    if locale not in LOCALES:
        raise InvalidInput(f"locale must be one of {', '.join(LOCALES)}", field="locale")
    user.locale = locale


def get_user(user_id: int) -> DashboardUser | None:
    return db.session.get(DashboardUser, user_id)
