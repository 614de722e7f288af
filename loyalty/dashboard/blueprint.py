"""The dashboard blueprint: hooks shared by every page (session timeout, CSRF, locale)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from flask_babel import format_datetime, get_locale, refresh
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from loyalty.clock import utcnow
from loyalty.dashboard.access import can, csrf, end_session, session_expired

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder=str(TEMPLATES),
    static_folder="static",
    static_url_path="/static",
)


@bp.before_request
def guard() -> Any:
    # The user and the CSRF token are read afresh from the session for each request (a
    # request inside an app context that outlives it, as in tests, must not see the
    # previous request's).
    g.pop("_login_user", None)
    g.pop("csrf_token", None)  # Flask-WTF's per-request cache of the session's token
    refresh()  # Flask-Babel's cached locale: it is the (now known) user's
    if request.method == "POST":
        csrf.protect()  # 400 without the session's token: nothing below runs
    if current_user.is_authenticated and session_expired(utcnow()):
        end_session()
        return redirect(url_for("dashboard.login", next=request.full_path))
    return None


@bp.after_request
def headers(response: Response) -> Response:
    # Pages show personal data: never cached, never framed; only our own scripts run.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'"
    )
    return response


@bp.context_processor
def helpers() -> dict[str, Any]:
    return {
        "can": can,
        "user": current_user,
        "get_locale": get_locale,
        "format_datetime": _when,
    }


def _when(value: Any, format: str = "short") -> str:
    """A UTC timestamp in the user's locale (the dashboard shows UTC: one clock for a team)."""
    if value is None:
        return ""
    return format_datetime(value, format, rebase=False) + " UTC"


@bp.errorhandler(403)
def forbidden(_error: Any) -> Any:
    return render_template("dashboard/error.html", status=403), 403


@bp.errorhandler(404)
def not_found(_error: Any) -> Any:
    return render_template("dashboard/error.html", status=404), 404


@bp.errorhandler(CSRFError)
def csrf_refused(_error: Any) -> Any:
    return render_template("dashboard/error.html", status=400, csrf=True), 400


def render(template: str, **context: Any) -> str:
    return render_template(f"dashboard/{template}", **context)
