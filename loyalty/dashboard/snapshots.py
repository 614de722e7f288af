"""How the audit log describes a target before and after a change: ids, states and
figures only (the log is append-only, so it must never hold personal data)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from loyalty.dashboard.audit import register_snapshot
from loyalty.db import db


def _int_id(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def member(raw: str) -> dict[str, Any] | None:
    from loyalty.ledger.operations import member_balance
    from loyalty.members.models import Member, MemberIdentity
    from loyalty.tiers.models import Tier

    member_id = _int_id(raw)
    found = db.session.get(Member, member_id) if member_id else None
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

    offer_id = _int_id(raw)
    found = db.session.get(CouponOffer, offer_id) if offer_id else None
    if found is None:
        return None
    return {"name": found.name, "status": found.status, "version": found.version}


def segment(raw: str) -> dict[str, Any] | None:
    from campaigns.models import Segment

    segment_id = _int_id(raw)
    found = db.session.get(Segment, segment_id) if segment_id else None
    if found is None:
        return None
    return {"name": found.name, "kind": found.kind, "version": found.version, "rule": found.rule}


def api_client(raw: str) -> dict[str, Any] | None:
    from loyalty.auth.models import ApiClient

    client_id = _int_id(raw)
    found = db.session.get(ApiClient, client_id) if client_id else None
    if found is None:
        return None
    return {
        "name": found.name,
        "scopes": sorted(found.scopes),
        "store_id": found.store_id,
        "active": found.active,
    }


def campaign(raw: str) -> dict[str, Any] | None:
    from campaigns.engine_models import Campaign

    campaign_id = _int_id(raw)
    found = db.session.get(Campaign, campaign_id) if campaign_id else None
    if found is None:
        return None
    return {
        "name": found.name,
        "status": found.status,
        "version": found.version,
        "segment_id": found.segment_id,
        "holdout_pct": found.holdout_pct,
    }


def journey(raw: str) -> dict[str, Any] | None:
    from campaigns.journey_models import Journey

    journey_id = _int_id(raw)
    found = db.session.get(Journey, journey_id) if journey_id else None
    if found is None:
        return None
    return {
        "name": found.name,
        "status": found.status,
        "version": found.version,
        "trigger": found.trigger,
    }


def earning_rule(raw: str) -> dict[str, Any] | None:
    from loyalty.earning.models import EarningRule
    from loyalty.earning.operations import RULE_FIELDS

    rule_id = _int_id(raw)
    found = db.session.get(EarningRule, rule_id) if rule_id else None
    if found is None:
        return None
    return {name: getattr(found, name) for name in RULE_FIELDS}


def webhook(raw: str) -> dict[str, Any] | None:
    from notifications.webhooks.models import WebhookSubscription

    subscription_id = _int_id(raw)
    found = db.session.get(WebhookSubscription, subscription_id) if subscription_id else None
    if found is None:
        return None
    # Never the secret: whether a previous one still signs, and until when.
    return {
        "url": found.url,
        "topics": list(found.topics),
        "status": found.status,
        "previous_secret_expires_at": found.previous_secret_expires_at,
    }


def consent_text(raw: str) -> dict[str, Any] | None:
    from notifications.consent_texts import ConsentText

    text_id = _int_id(raw)
    found = db.session.get(ConsentText, text_id) if text_id else None
    if found is None:
        return None
    return {
        "channel": found.channel,
        "purpose": found.purpose,
        "locale": found.locale,
        "version": found.version,
        "text": found.text,
    }


def message_template(raw: str) -> dict[str, Any] | None:
    from notifications.models import MessageTemplate

    template_id = _int_id(raw)
    found = db.session.get(MessageTemplate, template_id) if template_id else None
    if found is None:
        return None
    return {
        "key": found.key,
        "channel": found.channel,
        "locale": found.locale,
        "version": found.version,
    }


def dashboard_user(raw: str) -> dict[str, Any] | None:
    from loyalty.dashboard.models import DashboardUser

    user_id = _int_id(raw)
    found = db.session.get(DashboardUser, user_id) if user_id else None
    if found is None:
        return None
    # Never a secret: only whether TOTP is on or being set up.
    return {
        "role": found.role,
        "locale": found.locale,
        "active": found.active,
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
