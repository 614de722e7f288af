"""Sign in (password, then TOTP when the user has it), sign out, the user's own settings."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import segno
from flask import abort, current_app, flash, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_babel import refresh
from flask_login import current_user

from loyalty.clock import utcnow
from loyalty.dashboard import users
from loyalty.dashboard.access import client_ip, end_session, needs, start_session
from loyalty.dashboard.blueprint import bp, render
from loyalty.dashboard.edge import Refused, change, record_event
from loyalty.dashboard.models import LOCALES
from loyalty.dashboard.roles import Permission
from loyalty.db import db, prepare_to_write

PENDING_TOTP = "pending_totp_user"


def _next_url() -> str:
    target = request.args.get("next") or ""
    parts = urlsplit(target)
    # Only a path on this site (no scheme, host or protocol-relative //host).
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("dashboard.overview")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "GET":
        return render("login.html")
    email = request.form.get("email", "")[:254]
    password = request.form.get("password", "")[:1000]
    throttle = current_app.extensions["omniloyal.dashboard_login_limits"]
    if not throttle.allowed(client_ip(), email):
        return render("login.html", error=_("Too many failed sign-ins. Try again later.")), 429
    prepare_to_write()
    user = users.check_password(email, password)
    if user is None:
        db.session.rollback()
        throttle.failed(client_ip(), email)
        record_event("auth.sign_in_failed", actor=f"anonymous:{client_ip()}",
                     after={"email_domain": email.rpartition("@")[2][:100]})  # fmt: skip
        return render("login.html", error=_("Wrong email or password.")), 401
    if user.totp_secret:
        db.session.commit()  # a rehashed password is kept
        session.clear()
        session[PENDING_TOTP] = user.id
        return redirect(url_for("dashboard.totp", next=request.args.get("next")))
    return _signed_in(user)


def _signed_in(user: users.DashboardUser) -> Any:
    now = utcnow()
    user.last_login_at = now
    db.session.commit()
    start_session(user, now)
    record_event("auth.sign_in", actor=user.actor, target_type="dashboard_user", target_id=user.id)
    return redirect(_next_url())


@bp.route("/login/totp", methods=["GET", "POST"])
def totp() -> Any:
    user_id = session.get(PENDING_TOTP)
    user = users.get_user(user_id) if isinstance(user_id, int) else None
    if user is None:
        return redirect(url_for("dashboard.login"))
    if request.method == "GET":
        return render("totp.html")
    throttle = current_app.extensions["omniloyal.dashboard_login_limits"]
    if not throttle.allowed(client_ip(), user.email):
        return render("totp.html", error=_("Too many failed sign-ins. Try again later.")), 429
    if not users.check_totp(user, request.form.get("code", "")[:12], utcnow()):
        throttle.failed(client_ip(), user.email)
        record_event("auth.totp_failed", actor=user.actor, target_type="dashboard_user",
                     target_id=user.id)  # fmt: skip
        return render("totp.html", error=_("That code is not valid.")), 401
    prepare_to_write()
    return _signed_in(users.get_user(user.id))  # type: ignore[arg-type]


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    if current_user.is_authenticated:
        record_event("auth.sign_out", actor=current_user.actor, target_type="dashboard_user",
                     target_id=current_user.id)  # fmt: skip
    end_session()
    return redirect(url_for("dashboard.login"))


@bp.route("/account", methods=["GET", "POST"])
@needs(Permission.VIEW)
def account() -> Any:
    new_secret = None
    status = 200
    if request.method == "POST":
        user = current_user._get_current_object()
        action = request.form.get("action")
        try:
            if action == "locale":
                locale = request.form.get("locale", "en")
                change("user.locale", lambda: users.set_locale(user, locale),
                       target_type="dashboard_user", target_id=user.id,
                       details=lambda _r: {"locale": locale})  # fmt: skip
                refresh()  # this response in the new language
                flash(_("Language saved."), "ok")
            elif action == "totp-begin":
                new_secret = change("user.totp_enrolment_started",
                                    lambda: users.begin_totp(user),
                                    target_type="dashboard_user", target_id=user.id)  # fmt: skip
            elif action in ("totp-confirm", "totp-disable"):
                status = _totp_step(user, action)
            else:
                abort(400)
        except Refused:
            status = 422
    user = current_user._get_current_object()
    return render(
        "account.html",
        locales=LOCALES,
        totp_secret=new_secret,
        totp_uri=users.totp_uri(user, new_secret) if new_secret else None,
        totp_qr=_qr_svg(users.totp_uri(user, new_secret)) if new_secret else None,
    ), status


def _totp_step(user: users.DashboardUser, action: str) -> int:
    """Confirm enrolment or turn TOTP off, each with a current code; wrong codes count
    against the sign-in throttle (a code is 6 digits: guessing must stay slow)."""
    throttle = current_app.extensions["omniloyal.dashboard_login_limits"]
    if not throttle.allowed(client_ip(), user.email):
        flash(_("Too many wrong codes. Try again later."), "error")
        return 429
    code = request.form.get("code", "")[:12]
    now = utcnow()
    try:
        if action == "totp-confirm":
            change("user.totp_enabled", lambda: users.confirm_totp(user, code, now),
                   target_type="dashboard_user", target_id=user.id)  # fmt: skip
            flash(_("Two-step sign-in is on."), "ok")
        else:
            change("user.totp_disabled", lambda: users.disable_totp(user, code, now),
                   target_type="dashboard_user", target_id=user.id)  # fmt: skip
            flash(_("Two-step sign-in is off."), "ok")
    except Refused:
        throttle.failed(client_ip(), user.email)
        return 422
    return 200


def _qr_svg(uri: str) -> str:
    """The otpauth URI as a QR code, an SVG data URI (the page's CSP allows data: images)."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=4, border=2))
