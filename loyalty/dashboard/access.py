"""Sign-in, sessions, CSRF and role checks for the dashboard.

- Passwords: argon2 (loyalty.dashboard.users); optional TOTP as a second step.
- Sessions: Flask's signed cookie, HttpOnly, SameSite=Lax, Secure when the public URL is
  https; idle timeout OMNILOYAL_DASHBOARD_SESSION_MINUTES (refreshed per request), and a
  sign-in never lasts more than MAX_SESSION_HOURS.
- CSRF: every POST to /dashboard carries the session's token (Flask-WTF), a form field or
  the X-CSRFToken header; without it: 400, nothing changes.
- Throttling: failed sign-ins count per client IP and per account (limits library, the
  rate limiter's storage: Redis when configured); over the limit: 429, even with the right
  password.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, abort, g, redirect, request, session, url_for
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFProtect
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from loyalty.config import Settings
from loyalty.dashboard.models import DashboardUser
from loyalty.dashboard.roles import Permission, allows
from loyalty.db import db

F = TypeVar("F", bound=Callable[..., Any])
MAX_SESSION_HOURS = 12

login_manager = LoginManager()
csrf = CSRFProtect()


def init_access(app: Flask, settings: Settings) -> None:
    app.config.update(
        SESSION_COOKIE_NAME="omniloyal_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_base_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.dashboard_session_minutes),
        SESSION_REFRESH_EACH_REQUEST=True,
        # Checked by the dashboard blueprint only: the API authenticates with bearer
        # credentials, which a browser never sends by itself, so it needs no CSRF token.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    login_manager.login_view = "dashboard.login"
    login_manager.session_protection = "strong"
    login_manager.init_app(app)
    csrf.init_app(app)
    storage = storage_from_string(
        settings.redis_url or "memory://",
        **({"socket_connect_timeout": 1, "socket_timeout": 1} if settings.redis_url else {}),
    )
    app.extensions["omniloyal.dashboard_login_limits"] = LoginThrottle(
        FixedWindowRateLimiter(storage),
        per_ip=parse_many(settings.dashboard_login_limit_per_ip),
        per_account=parse_many(settings.dashboard_login_limit_per_account),
    )


@login_manager.user_loader
def _load_user(user_id: str) -> DashboardUser | None:
    if not user_id.isdigit():
        return None
    return db.session.get(DashboardUser, int(user_id))


class LoginThrottle:
    """Failed sign-ins per IP and per account; `allowed` before checking a password."""

    def __init__(self, limiter: FixedWindowRateLimiter, *, per_ip: Any, per_account: Any) -> None:
        self.limiter = limiter
        self.per_ip = per_ip
        self.per_account = per_account

    def _keys(self, ip: str, email: str) -> list[tuple[Any, tuple[str, ...]]]:
        return [(item, ("dashboard-login-ip", ip)) for item in self.per_ip] + [
            (item, ("dashboard-login-account", email.strip().lower())) for item in self.per_account
        ]

    def allowed(self, ip: str, email: str) -> bool:
        try:
            return all(self.limiter.test(item, *key) for item, key in self._keys(ip, email))
        except Exception:  # storage unreachable: never lock everyone out
            return True

    def failed(self, ip: str, email: str) -> None:
        try:
            for item, key in self._keys(ip, email):
                self.limiter.hit(item, *key)
        except Exception:
            pass


def start_session(user: DashboardUser, now: datetime) -> None:
    session.clear()  # a fresh session (and CSRF token) at each sign-in
    session.permanent = True
    login_user(user)
    session["signed_in_at"] = now.timestamp()


def end_session() -> None:
    logout_user()
    session.clear()


def session_expired(now: datetime) -> bool:
    started = session.get("signed_in_at")
    return started is None or now.timestamp() - float(started) > MAX_SESSION_HOURS * 3600


def needs(permission: Permission) -> Callable[[F], F]:
    """The signed-in user's role must allow `permission` (else 403; signed out: the login)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return redirect(url_for("dashboard.login", next=request.full_path))
            if not allows(current_user.role, permission):
                abort(403)
            return view(*args, **kwargs)

        wrapper._permission = permission  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def can(permission: str) -> bool:
    """For templates: whether to show a button (the action checks again)."""
    return bool(current_user.is_authenticated) and allows(current_user.role, Permission(permission))


def client_ip() -> str:
    return request.remote_addr or "unknown"


def request_id() -> str | None:
    return g.get("request_id")
