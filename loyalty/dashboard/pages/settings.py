"""Settings: earning rules (list, switch; the form is in rules.py), tiers, stores, API keys
(shown once, scopes, revoke), webhooks (secret shown once, rotate, disable, delete, recent
failures), message templates with a preview and new versions."""

from __future__ import annotations

from datetime import datetime, timedelta
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
    from notifications.webhooks import operations as webhook_ops
    from notifications.webhooks.models import WebhookDeliveryStatus, WebhookSubscription

    shown_once: dict[str, Any] = {}
    if request.method == "POST":
        shown_once = _change_settings(request.form.get("action", ""))
        if not shown_once:
            anchor = request.form.get("action", "").split("-")[0]
            return redirect(url_for("dashboard.settings") + "#" + anchor)
    import sqlalchemy as sa

    from loyalty.auth import scopes

    stores = list_stores(limit=200)
    webhooks = db.session.scalars(
        sa.select(WebhookSubscription).order_by(WebhookSubscription.id)
    ).all()
    # The last failures of each subscription (a handful of subscriptions: one read each).
    failures = {
        w.id: webhook_ops.deliveries_page(w.id, status=WebhookDeliveryStatus.FAILED.value,
                                          before_id=None, limit=3)
        for w in webhooks
    }  # fmt: skip
    return render(
        "settings.html",
        rules=list_rules(),
        tiers=list_tiers(),
        stores=stores,
        clients=db.session.scalars(sa.select(ApiClient).order_by(ApiClient.id.desc())).all(),
        all_scopes=sorted(scopes.ALL),
        webhooks=webhooks,
        failures=failures,
        topics=sorted(webhook_ops.TOPICS),
        new_key=shown_once.get("key"),
        new_secret=shown_once.get("webhook_secret"),
    )


def _change_settings(action: str) -> dict[str, Any]:
    """Run the form's action; returns what is shown once (a new API key or webhook
    secret), else an empty dict (then the page is loaded again)."""
    from loyalty.auth.keys import create_api_client, revoke_api_client
    from loyalty.dashboard.pages.rules import switch_rule
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
            return {"key": issued.key}
        elif action == "key-revoke":
            client_id = _form_id("client_id")
            change("api_keys.revoke", lambda: revoke_api_client(client_id, now=now),
                   target_type="api_client", target_id=client_id)  # fmt: skip
            flash(_("Key revoked."), "ok")
        elif action in ("rule-activate", "rule-deactivate"):
            switch_rule(_form_id("rule_id"), action == "rule-activate")
        elif action.startswith("webhook"):
            return _change_webhook(action, now)
        else:
            abort(400)
    except ValidationError as error:
        flash(_errors(error), "error")
    except (Refused, ValueError):
        pass
    return {}


def _form_id(name: str) -> int:
    raw = request.form.get(name, "").strip()
    if not raw.isdigit() or len(raw) > 18:
        abort(400)
    return int(raw)


def _change_webhook(action: str, now: datetime) -> dict[str, Any]:
    """Webhook subscriptions through the admin API's schemas and operations."""
    from flask import current_app

    from notifications.webhooks import operations as webhook_ops
    from notifications.webhooks.schemas import (
        RotateSecretSchema,
        WebhookSubscriptionCreateSchema,
    )

    allow_private = current_app.extensions["omniloyal.settings"].webhook_allow_private_targets
    if action == "webhook":
        data = WebhookSubscriptionCreateSchema().load(
            {
                "url": request.form.get("url", "").strip(),
                "topics": request.form.getlist("topics"),
                "description": request.form.get("description", "").strip() or None,
            }
        )
        actor = current_user.actor
        created = change(
            "webhooks.create",
            lambda: webhook_ops.create_subscription(
                url=data["url"],
                topics=data["topics"],
                description=data["description"],
                actor=actor,
                now=now,
                allow_private=allow_private,
            ),
            target_type="webhook",
            after_target=lambda w: w.id,
        )
        flash(_("Copy the signing secret now: it is shown only once."), "ok")
        return {"webhook_secret": {"id": created.id, "url": created.url, "secret": created.secret}}
    subscription_id = _form_id("subscription_id")
    if action in ("webhook-enable", "webhook-disable"):
        status = "active" if action == "webhook-enable" else "disabled"
        change(
            f"webhooks.{action.removeprefix('webhook-')}",
            lambda: webhook_ops.update_subscription(
                subscription_id, {"status": status}, now=now, allow_private=allow_private
            ),
            target_type="webhook",
            target_id=subscription_id,
        )
    elif action == "webhook-delete":
        change("webhooks.delete", lambda: webhook_ops.delete_subscription(subscription_id),
               target_type="webhook", target_id=subscription_id)  # fmt: skip
        flash(_("Webhook deleted."), "ok")
    elif action == "webhook-rotate":
        keep = RotateSecretSchema().load(_form_ints(("keep_previous_seconds",)) or {})[
            "keep_previous_seconds"
        ]
        rotated = change(
            "webhooks.rotate_secret",
            lambda: webhook_ops.rotate_secret(
                subscription_id, keep_previous_for=timedelta(seconds=keep), now=now
            ),
            target_type="webhook",
            target_id=subscription_id,
            details=lambda _w: {"keep_previous_seconds": keep},
        )
        flash(_("Copy the signing secret now: it is shown only once."), "ok")
        return {"webhook_secret": {"id": rotated.id, "url": rotated.url, "secret": rotated.secret}}
    else:
        abort(400)
    return {}


@bp.route("/settings/templates", methods=["GET", "POST"])
@needs(Permission.VIEW)
def templates() -> Any:
    """Preview a template on a member; edit a draft, preview it, save it as a new version
    (notifications.templates.save_version, as POST /v1/notifications/templates does)."""
    from notifications import pipeline
    from notifications import templates as template_ops
    from notifications.providers.base import Channel

    shipped = template_ops.shipped_defaults()
    preview = error = None
    status = 200
    key = request.values.get("key", shipped[0]["key"] if shipped else "").strip()[:100]
    channel = request.values.get("channel", "sms")
    locale = request.values.get("locale", "en").strip()[:16]
    member_raw = request.values.get("member_id", "").strip()
    if channel not in {c.value for c in Channel}:
        abort(400)
    draft = None
    if request.method == "POST":
        # Drafting is template work: a read-only role previews stored versions with GET.
        if not allows(current_user.role, Permission.TEMPLATES_WRITE):
            abort(403)
        draft = request.form.get("source", "")
        problems = _draft_problems(key, channel, locale, draft)
        if not problems and request.form.get("action") != "save" and not member_raw:
            problems = [_("A member id is needed for the preview.")]
        if problems:
            error, status = "; ".join(problems), 422
        elif request.form.get("action") == "save":
            actor, now = current_user.actor, utcnow()
            try:
                saved = change(
                    "templates.save_version",
                    lambda: template_ops.save_version(
                        key, Channel(channel), locale, draft, actor=actor, now=now
                    ),
                    target_type="message_template",
                    after_target=lambda t: t.id,
                    details=lambda t: {"replaces_version": t.version - 1 or None},
                )
                flash(_("Version %(version)s saved: it is used from now on.",
                        version=saved.version), "ok")  # fmt: skip
                back = {"key": key, "channel": channel, "locale": locale, "member_id": member_raw}
                return redirect(url_for("dashboard.templates", **back))
            except Refused:
                status = 422
    if member_raw.isdigit() and len(member_raw) < 19 and error is None:
        try:
            resolved, rendered = pipeline.render_for_member(
                key, Channel(channel), member_id=int(member_raw), variables={}, now=utcnow(),
                locale=locale, source=draft,
            )  # fmt: skip
            preview = {"resolved": resolved, "rendered": rendered}
        except (OmniloyalError, ValueError) as problem:
            error = getattr(problem, "detail", str(problem))
            status = 422 if draft is not None else status
    current = None
    if draft is None:
        try:
            current = template_ops.resolve(key, Channel(channel), locale)
        except OmniloyalError:
            current = None
    return render(
        "templates.html",
        shipped=shipped,
        key=key,
        channel=channel,
        locale=locale,
        member_id=member_raw,
        preview=preview,
        error=error,
        draft=draft if draft is not None else (current.source if current else ""),
        current=current,
    ), status


def _draft_problems(key: str, channel: str, locale: str, source: str) -> list[str]:
    """Why a draft can't be saved: the API's checks (key, locale, Jinja syntax, blocks),
    plus variables no message of this template has (they would print nothing)."""
    from notifications import templates as template_ops
    from notifications.schemas import TemplateCreateSchema

    try:
        TemplateCreateSchema().load(
            {"key": key, "channel": channel, "locale": locale, "source": source}
        )
        template_ops.check_source(source, channel)  # type: ignore[arg-type]
    except ValidationError as error:
        return [_errors(error)]
    except OmniloyalError as error:
        return [error.detail or error.title]
    unknown = template_ops.unknown_variables(key, source)
    if unknown and request.form.get("allow_unknown") != "on":
        return [
            _("unknown variables: %(names)s (they print nothing unless the messages of this "
              "template carry them; tick the box to save anyway)", names=", ".join(unknown))
        ]  # fmt: skip
    return []
