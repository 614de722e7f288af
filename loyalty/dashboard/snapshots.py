"""How the audit log describes a target before and after a change: ids, states and
figures only (the log is append-only, so it must never hold personal data)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from loyalty.dashboard.audit import register_snapshot
from loyalty.db import db


def _int_id(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def _get(model: type[Any], raw: str) -> Any | None:
    row_id = _int_id(raw)
    return db.session.get(model, row_id) if row_id else None


def _columns(found: Any, *names: str) -> dict[str, Any]:
    return {name: getattr(found, name) for name in names}


def member(raw: str) -> dict[str, Any] | None:
    from loyalty.ledger.operations import member_balance
    from loyalty.members.models import Member, MemberIdentity
    from loyalty.tiers.models import Tier

    found = _get(Member, raw)
    if found is None:
        return None
    tier = db.session.get(Tier, found.tier_id) if found.tier_id else None
    kinds = db.session.scalars(
        sa.select(MemberIdentity.kind).where(MemberIdentity.member_id == found.id)
    ).all()
    balance = member_balance(found.id) if found.status != "merged" else None
    return {
        "status": found.status,
        "merged_into_id": found.merged_into_id,
        "tier": tier.code if tier else None,
        "points": balance.balance if balance is not None else None,
        "identities": sorted(kinds),
    }


def offer(raw: str) -> dict[str, Any] | None:
    from loyalty.coupons.models import CouponOffer

    found = _get(CouponOffer, raw)
    return _columns(found, "name", "status", "version") if found else None


def segment(raw: str) -> dict[str, Any] | None:
    from campaigns.models import Segment

    found = _get(Segment, raw)
    return _columns(found, "name", "kind", "version", "rule") if found else None


def api_client(raw: str) -> dict[str, Any] | None:
    from loyalty.auth.models import ApiClient

    found = _get(ApiClient, raw)
    if found is None:
        return None
    return {**_columns(found, "name", "store_id", "active"), "scopes": sorted(found.scopes)}


def campaign(raw: str) -> dict[str, Any] | None:
    from campaigns.engine_models import Campaign

    found = _get(Campaign, raw)
    fields = ("name", "status", "version", "segment_id", "holdout_pct")
    return _columns(found, *fields) if found else None


def journey(raw: str) -> dict[str, Any] | None:
    from campaigns.journey_models import Journey

    found = _get(Journey, raw)
    return _columns(found, "name", "status", "version", "trigger") if found else None


def earning_rule(raw: str) -> dict[str, Any] | None:
    from loyalty.earning.models import EarningRule
    from loyalty.earning.operations import RULE_FIELDS

    found = _get(EarningRule, raw)
    return _columns(found, *RULE_FIELDS) if found else None


def webhook(raw: str) -> dict[str, Any] | None:
    from notifications.webhooks.models import WebhookSubscription

    found = _get(WebhookSubscription, raw)
    if found is None:
        return None
    # Never the secret: whether a previous one still signs, and until when.
    return {
        **_columns(found, "url", "status", "previous_secret_expires_at"),
        "topics": list(found.topics),
    }


def consent_text(raw: str) -> dict[str, Any] | None:
    from notifications.consent_texts import ConsentText

    found = _get(ConsentText, raw)
    fields = ("channel", "purpose", "locale", "version", "text")
    return _columns(found, *fields) if found else None


def message_template(raw: str) -> dict[str, Any] | None:
    from notifications.models import MessageTemplate

    found = _get(MessageTemplate, raw)
    return _columns(found, "key", "channel", "locale", "version") if found else None


def dashboard_user(raw: str) -> dict[str, Any] | None:
    from loyalty.dashboard.models import DashboardUser

    found = _get(DashboardUser, raw)
    if found is None:
        return None
    # Never a secret: only whether TOTP is on or being set up.
    return {
        **_columns(found, "role", "locale", "active"),
        "totp": found.totp_secret is not None,
        "totp_pending": found.totp_pending_secret is not None,
    }


for _name, _func in (
    ("campaign", campaign),
    ("journey", journey),
    ("member", member),
    ("offer", offer),
    ("segment", segment),
    ("api_client", api_client),
    ("earning_rule", earning_rule),
    ("webhook", webhook),
    ("consent_text", consent_text),
    ("message_template", message_template),
    ("dashboard_user", dashboard_user),
):
    register_snapshot(_name, _func)
