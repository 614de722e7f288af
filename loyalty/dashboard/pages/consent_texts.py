"""Settings: consent texts, the wording a member agrees to per channel, purpose and
language. Publishing appends a version (notifications.consent_texts.publish); the latest is
in force and grants recorded over the API name it."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from loyalty.clock import utcnow
from loyalty.dashboard.access import needs
from loyalty.dashboard.blueprint import bp, render
from loyalty.dashboard.edge import Refused, change
from loyalty.dashboard.roles import Permission, allows


@bp.route("/settings/consent-texts", methods=["GET", "POST"])
@needs(Permission.VIEW)
def consent_texts() -> Any:
    from notifications import consent_texts as texts
    from notifications.consent import Purpose
    from notifications.providers.base import Channel

    channels, purposes = [c.value for c in Channel], [p.value for p in Purpose]
    chosen = {
        "channel": request.values.get("channel", channels[0]),
        "purpose": request.values.get("purpose", Purpose.MARKETING.value),
        "locale": request.values.get("locale", texts.LOCALES[0]),
    }
    if (
        chosen["channel"] not in channels
        or chosen["purpose"] not in purposes
        or chosen["locale"] not in texts.LOCALES
    ):
        abort(400)
    draft = None
    status = 200
    if request.method == "POST":
        if not allows(current_user.role, Permission.SETTINGS_WRITE):
            abort(403)
        draft = request.form.get("text", "")
        actor, now = current_user.actor, utcnow()
        try:
            published = change(
                "consent_texts.publish",
                lambda: texts.publish(**chosen, text=draft, actor=actor, now=now),
                target_type="consent_text",
                after_target=lambda t: t.id,
                details=lambda t: {"replaces_version": t.version - 1 or None},
            )
            flash(_("Version %(version)s is in force.", version=published.version), "ok")
            return redirect(url_for("dashboard.consent_texts", **chosen))
        except Refused:
            status = 422
    current = texts.current_texts()
    history = texts.versions(chosen["channel"], chosen["purpose"], chosen["locale"])
    if draft is None:
        draft = history[0].text if history else ""
    return render(
        "consent_texts.html",
        channels=channels,
        purposes=purposes,
        locales=texts.LOCALES,
        current=current,
        chosen=chosen,
        history=history,
        draft=draft,
    ), status
