"""Settings: earning rules, tiers, stores, API keys (shown once, scopes, revoke), message
templates with a preview, webhooks."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from marshmallow import ValidationError

from loyalty.clock import utcnow
from loyalty.dashboard.access import needs
from loyalty.dashboard.blueprint import bp, render
from loyalty.dashboard.edge import Refused, change
from loyalty.dashboard.pages.offers import _errors
from loyalty.dashboard.roles import Permission, allows
from loyalty.errors import OmniloyalError


def _form_ints(names: tuple[str, ...]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in names:
        value = request.form.get(name, "").strip()
        if value:
            data[name] = int(value) if value.lstrip("-").isdigit() else value
    return data


@bp.route("/settings", methods=["GET", "POST"])
@needs(Permission.VIEW)
def settings() -> Any:
    from loyalty.auth.models import ApiClient
    from loyalty.db import db
    from loyalty.earning.operations import list_rules
    from loyalty.stores.operations import list_stores
    from loyalty.tiers.operations import list_tiers
    from notifications.webhooks.models import WebhookSubscription

    new_key = None
    if request.method == "POST":
        new_key = _change_settings(request.form.get("action", ""))
        if new_key is None:
            return redirect(url_for("dashboard.settings") + "#" + request.form.get("action", ""))
    import sqlalchemy as sa

    from loyalty.auth import scopes

    stores = list_stores(limit=200)
    return render(
        "settings.html",
        rules=list_rules(),
        tiers=list_tiers(),
        stores=stores,
        clients=db.session.scalars(sa.select(ApiClient).order_by(ApiClient.id.desc())).all(),
        all_scopes=sorted(scopes.ALL),
        webhooks=db.session.scalars(sa.select(WebhookSubscription)).all(),
        new_key=new_key,
    )


def _change_settings(action: str) -> str | None:
    """Run the form's action; returns a new API key (shown once), else None."""
    from loyalty.auth.keys import create_api_client, revoke_api_client
    from loyalty.stores.operations import create_store
    from loyalty.stores.schemas import StoreCreateSchema
    from loyalty.tiers.operations import create_tier
    from loyalty.tiers.schemas import TierCreateSchema

    needed = Permission.API_KEYS if action.startswith("key") else Permission.SETTINGS_WRITE
    if not allows(current_user.role, needed):
        abort(403)
    now = utcnow()
    try:
        if action == "tier":
            data = TierCreateSchema().load(
                {
                    "code": request.form.get("code", "").strip(),
                    "name": request.form.get("name", "").strip(),
                    **_form_ints(("rank", "threshold")),
                }
            )
            change("tiers.create", lambda: create_tier(data, now=now), target_type="tier",
                   after_target=lambda t: t.id, details=lambda t: {"code": t.code})  # fmt: skip
        elif action == "store":
            data = StoreCreateSchema().load(
                {
                    k: request.form.get(k, "").strip()
                    for k in ("id", "name", "region", "country", "timezone")
                    if request.form.get(k, "").strip()
                }
            )
            change("stores.create", lambda: create_store(data, now=now), target_type="store",
                   after_target=lambda s: s.id)  # fmt: skip
        elif action == "key":
            chosen = request.form.getlist("scopes")
            store_id = request.form.get("store_id", "").strip() or None
            issued = change(
                "api_keys.create",
                lambda: create_api_client(
                    name=request.form.get("name", "").strip()[:120] or "dashboard key",
                    scopes=chosen,
                    store_id=store_id,
                    now=now,
                ),
                target_type="api_client",
                after_target=lambda i: i.client.id,
            )
            flash(_("Copy the key now: it is shown only once."), "ok")
            return issued.key
        elif action == "key-revoke":
            client_id = int(request.form.get("client_id", "0"))
            change("api_keys.revoke", lambda: revoke_api_client(client_id, now=now),
                   target_type="api_client", target_id=client_id)  # fmt: skip
            flash(_("Key revoked."), "ok")
        else:
            abort(400)
    except ValidationError as error:
        flash(_errors(error), "error")
    except (Refused, ValueError):
        pass
    return None


@bp.route("/settings/templates")
@needs(Permission.VIEW)
def templates() -> Any:
    from notifications import pipeline
    from notifications import templates as template_ops
    from notifications.providers.base import Channel

    shipped = template_ops.shipped_defaults()
    preview = error = None
    key = request.values.get("key", shipped[0]["key"] if shipped else "")
    channel = request.values.get("channel", "sms")
    locale = request.values.get("locale", "en")
    member_raw = request.values.get("member_id", "").strip()
    if member_raw.isdigit() and len(member_raw) < 19:
        try:
            resolved, rendered = pipeline.render_for_member(
                key, Channel(channel), member_id=int(member_raw), variables={}, now=utcnow(),
                locale=locale,
            )  # fmt: skip
            preview = {"resolved": resolved, "rendered": rendered}
        except (OmniloyalError, ValueError) as problem:
            error = getattr(problem, "detail", str(problem))
    return render(
        "templates.html",
        shipped=shipped,
        key=key,
        channel=channel,
        locale=locale,
        member_id=member_raw,
        preview=preview,
        error=error,
    )
